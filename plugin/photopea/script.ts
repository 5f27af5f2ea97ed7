// Photopea scripts are JavaScript source that Photopea runs with full access to the designer's
// document, so no text from a layer, a form field or the daemon may ever become code. A script is
// written only with the `photopeaScript` tag: the literal parts are ours, and every interpolated value
// goes through `scriptValue`, which emits JSON (a string stays a string literal, whatever it holds)
// with the characters that could still end a literal or a surrounding tag escaped (docs/SECURITY.md §R24). Photopea
// blanks every line that starts with `#` before it parses a script, so no line of ours may.

/** A value that may be spliced into a script. */
export type ScriptValue = string | number | boolean | null | readonly ScriptValue[] | { readonly [key: string]: ScriptValue };

/** A script built by `photopeaScript`; the channel sends nothing else. */
export interface PhotopeaScript {
  readonly source: string;
}

/**
 * A value as JavaScript source: JSON.stringify's output (a valid JS expression since ES2019), with
 * U+2028 and U+2029 (line terminators in pre-ES2019 engines), `<` and `>` (so that `</script>` or
 * `<!--` never appears) written as \u escapes, which mean the same character inside a string literal.
 */
export function scriptValue(value: ScriptValue): string {
  assertFinite(value);
  const json = JSON.stringify(value);
  return json.replace(/[\u2028\u2029<>]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function assertFinite(value: ScriptValue): void {
  if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('A script value must be a finite number.');
  if (Array.isArray(value)) for (const v of value as readonly ScriptValue[]) assertFinite(v);
  else if (typeof value === 'object' && value !== null) for (const v of Object.values(value)) assertFinite(v);
}

/** Tagged template: photopeaScript`layer.name = ${name};` splices `name` as a JSON literal. */
export function photopeaScript(strings: TemplateStringsArray, ...values: readonly ScriptValue[]): PhotopeaScript {
  let source = strings[0] ?? '';
  for (let i = 0; i < values.length; i++) source += `(${scriptValue(values[i] ?? null)})${strings[i + 1] ?? ''}`;
  if (/^[ \t]*#/m.test(source)) throw new TypeError('A Photopea script line must not start with “#”: Photopea blanks such lines.');
  return Object.freeze({ source });
}

/** Scripts one after the other, as one script (each part built by `photopeaScript`). */
export function joinScripts(...parts: readonly PhotopeaScript[]): PhotopeaScript {
  return Object.freeze({ source: parts.map((p) => p.source).join('\n') });
}
