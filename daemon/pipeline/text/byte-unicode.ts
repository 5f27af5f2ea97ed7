// CLIP's (and GPT-2's) byte-level alphabet: every byte 0–255 maps to one printable Unicode character,
// so BPE works on any UTF-8 text without an unknown token. The order is the vocabulary's: the
// printable Latin-1 bytes ('!'…'~', '¡'…'¬', '®'…'ÿ') map to themselves and come first, then the
// remaining bytes (controls, space, 0x7F–0xA0, 0xAD) map to U+0100, U+0101, … in byte order.
// In CLIP's vocab.json, id i (0–255) is BYTE_SYMBOLS[i] and id 256 + i is BYTE_SYMBOLS[i] + '</w>'.

function buildByteSymbols(): { bytes: number[]; symbols: string[] } {
  const bytes: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bytes.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bytes.push(b);
  for (let b = 0xae; b <= 0xff; b++) bytes.push(b);
  const codes = [...bytes];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      codes.push(256 + n);
      n++;
    }
  }
  return { bytes, symbols: codes.map((c) => String.fromCharCode(c)) };
}

const TABLE = buildByteSymbols();

/** The 256 byte symbols in vocabulary order (BYTE_SYMBOLS[i] has id i in CLIP's vocab). */
export const BYTE_SYMBOLS: readonly string[] = Object.freeze(TABLE.symbols);

/** BYTE_TO_SYMBOL[b]: the character that stands for byte b. */
export const BYTE_TO_SYMBOL: readonly string[] = Object.freeze(
  (() => {
    const out = new Array<string>(256);
    TABLE.bytes.forEach((b, i) => {
      out[b] = TABLE.symbols[i]!;
    });
    return out;
  })(),
);

const encoder = new TextEncoder();

/** A string's UTF-8 bytes written in byte symbols. */
export function toByteSymbols(text: string): string {
  let out = '';
  for (const b of encoder.encode(text)) out += BYTE_TO_SYMBOL[b]!;
  return out;
}
