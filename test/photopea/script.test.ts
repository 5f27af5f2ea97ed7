// The Photopea script builder (docs/SECURITY.md §R24): every value spliced into a script is a JSON literal that evaluates
// to exactly that value, whatever it contains, and the script text never holds a raw line separator,
// `<` or `>`, and no line starts with `#` (Photopea blanks those). Scripts run here in the model of
// Photopea's interpreter (photopea-interpreter.ts), as Photopea runs them.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { joinScripts, photopeaScript, scriptValue, type ScriptValue } from '../../plugin/photopea/script.js';
import { interpretPhotopeaScript } from './photopea-interpreter.js';

const INJECTIONS = [
  '"); alert(1); ("',
  "'); alert(1); ('",
  '\\"); globalThis.pwned = 1; //',
  'back\\slash\\',
  'line\u2028separator\u2029paragraph',
  '</script><script>globalThis.pwned = 1</script>',
  '<!-- comment -->',
  '`${globalThis.pwned = 1}`',
  'lone \uD800 surrogate',
  'null\u0000byte\nnew line\r\t',
  "dog's bone-2",
];

/** Runs `out.value = <v>;` and answers what it assigned. */
function roundTrip(value: ScriptValue): unknown {
  const script = photopeaScript`out.value = ${value};`;
  const out: { value?: unknown } = {};
  const outcome = interpretPhotopeaScript(script.source, { out });
  if (outcome.error !== null) throw new Error(outcome.error);
  return out.value;
}

describe('photopeaScript', () => {
  it('keeps every injection string a string, exactly as given', () => {
    const g = globalThis as { pwned?: unknown };
    for (const s of INJECTIONS) {
      expect(roundTrip(s)).toBe(s);
    }
    expect(g.pwned).toBeUndefined();
  });

  it('writes no raw line separators, angle brackets or quotes that end the literal', () => {
    for (const s of INJECTIONS) {
      const source = photopeaScript`x = ${s};`.source;
      expect(source).not.toMatch(/[\u2028\u2029<>]/);
      expect(source.startsWith('x = ("')).toBe(true);
      expect(source.endsWith('");')).toBe(true);
    }
    expect(scriptValue('</script>')).toBe('"\\u003c/script\\u003e"');
    expect(scriptValue('a\u2028b')).toBe('"a\\u2028b"');
  });

  it('splices numbers, booleans, null and nested arrays as literals', () => {
    expect(roundTrip([[[0, 2], true], [[1], false]])).toEqual([[[0, 2], true], [[1], false]]);
    expect(roundTrip(-12.5)).toBe(-12.5);
    expect(roundTrip(null)).toBeNull();
    expect(photopeaScript`l.translate(${3} - b, ${-4});`.source).toBe('l.translate((3) - b, (-4));');
  });

  it('refuses to write a line starting with # (Photopea would blank it), whatever the values hold', () => {
    expect(() => photopeaScript`x = 1;\n#include "a.jsx"`).toThrow(/must not start with “#”/);
    expect(() => photopeaScript`x = 1;\n  # note`).toThrow(/must not start with “#”/);
    // A value cannot start a line: JSON escapes line breaks, so "#" stays inside its literal.
    expect(roundTrip('a\n#include "b.jsx"')).toBe('a\n#include "b.jsx"');
    expect(joinScripts(photopeaScript`a();`, photopeaScript`b(${'#'});`).source).toBe('a();\nb(("#"));');
  });

  it('refuses numbers that have no JSON literal', () => {
    for (const n of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      expect(() => photopeaScript`x = ${n};`).toThrow(TypeError);
      expect(() => photopeaScript`x = ${[1, [n]]};`).toThrow(TypeError);
    }
  });

  it('round-trips any string (property test)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (s) => {
        const back = roundTrip(s);
        // Lone surrogates survive as themselves: JSON.stringify escapes them (well-formed JSON.stringify).
        expect(back).toBe(s);
        expect(photopeaScript`x = ${s};`.source).not.toMatch(/[\u2028\u2029<>]/);
      }),
      { numRuns: 300 },
    );
  });
});
