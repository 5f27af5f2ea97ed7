// The pairing code's shape (docs/SECURITY.md §Pairing): 8 characters of Crockford's base32 alphabet
// (https://www.crockford.com/base32.html: the digits and the letters without I, L, O and U), shown as
// two groups of four, `7K3Q-MXR9`: 32⁸ = 2⁴⁰ codes. What a designer types is read the way Crockford
// decodes: case does not matter, hyphens and spaces are ignored, I and L are read as 1 and O as 0.

export const PAIRING_CODE = Object.freeze({
  /** Crockford's base32 symbols, in value order. */
  alphabet: '0123456789ABCDEFGHJKMNPQRSTVWXYZ',
  /** Symbols in a code: 8 × 5 bits = 40 bits of entropy. */
  length: 8,
  /** Symbols per group in the shown form. */
  group: 4,
  /** The longest text accepted before normalising (separators and spaces included). */
  maxInput: 32,
});

const ALIASES: Readonly<Record<string, string>> = Object.freeze({ I: '1', L: '1', O: '0' });

/** The canonical code (8 upper-case symbols, no separator) that `text` spells, or null when it does
 *  not spell one. */
export function normalizePairingCode(text: string): string | null {
  if (text.length > PAIRING_CODE.maxInput) return null;
  let out = '';
  for (const ch of text.toUpperCase()) {
    if (ch === '-' || ch === ' ' || ch === '\u00a0') continue;
    const symbol = ALIASES[ch] ?? ch;
    if (!PAIRING_CODE.alphabet.includes(symbol)) return null;
    out += symbol;
  }
  return out.length === PAIRING_CODE.length ? out : null;
}

/** The shown form of a canonical code: `7K3QMXR9` → `7K3Q-MXR9`. */
export function formatPairingCode(code: string): string {
  const groups: string[] = [];
  for (let i = 0; i < code.length; i += PAIRING_CODE.group) groups.push(code.slice(i, i + PAIRING_CODE.group));
  return groups.join('-');
}

/** The shown form's pattern: two groups of four symbols. */
export const PAIRING_CODE_SHOWN = /^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$/;
