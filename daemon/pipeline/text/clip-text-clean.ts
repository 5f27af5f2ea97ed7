// CLIP's text clean-up before BPE (basic_clean + whitespace_clean, then lower()): HTML entities
// unescaped twice as CLIP does, Unicode NFC (ftfy's normalization), control characters dropped,
// whitespace runs collapsed to one space, trimmed, lowercased. ftfy's mojibake repair is not done.

/** Named entities understood (HTML's most common; others are left as written). */
const NAMED_ENTITIES: Readonly<Record<string, string>> = Object.freeze({
  amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0', copy: '©', reg: '®', trade: '™',
  hellip: '…', mdash: '—', ndash: '–', lsquo: '‘', rsquo: '’', ldquo: '“', rdquo: '”', laquo: '«',
  raquo: '»', deg: '°', times: '×', divide: '÷', middot: '·', bull: '•', euro: '€', pound: '£',
  yen: '¥', cent: '¢', sect: '§', para: '¶', eacute: 'é', egrave: 'è', agrave: 'à', ccedil: 'ç',
  uuml: 'ü', ouml: 'ö', auml: 'ä', szlig: 'ß', ntilde: 'ñ', shy: '\u00ad', zwj: '\u200d', zwnj: '\u200c',
});

/** Windows-1252 meanings of the C1 numeric references (&#128; → €), as HTML5 and Python's html.unescape. */
const CP1252: Readonly<Record<number, number>> = Object.freeze({
  0x80: 0x20ac, 0x82: 0x201a, 0x83: 0x0192, 0x84: 0x201e, 0x85: 0x2026, 0x86: 0x2020, 0x87: 0x2021,
  0x88: 0x02c6, 0x89: 0x2030, 0x8a: 0x0160, 0x8b: 0x2039, 0x8c: 0x0152, 0x8e: 0x017d, 0x91: 0x2018,
  0x92: 0x2019, 0x93: 0x201c, 0x94: 0x201d, 0x95: 0x2022, 0x96: 0x2013, 0x97: 0x2014, 0x98: 0x02dc,
  0x99: 0x2122, 0x9a: 0x0161, 0x9b: 0x203a, 0x9c: 0x0153, 0x9e: 0x017e, 0x9f: 0x0178,
});

const ENTITY = /&(?:#(\d{1,8})|#[xX]([0-9a-fA-F]{1,7})|([a-zA-Z][a-zA-Z0-9]{1,31}));/g;

function numericReference(code: number): string {
  const mapped = CP1252[code];
  if (mapped !== undefined) return String.fromCodePoint(mapped);
  if (code === 0 || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return '\ufffd';
  return String.fromCodePoint(code);
}

/** One pass of HTML unescaping: numeric references and the named entities above. */
export function htmlUnescape(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(ENTITY, (whole, dec: string | undefined, hex: string | undefined, name: string | undefined) => {
    if (dec !== undefined) return numericReference(Number.parseInt(dec, 10));
    if (hex !== undefined) return numericReference(Number.parseInt(hex, 16));
    return (name !== undefined && NAMED_ENTITIES[name]) || whole;
  });
}

// Controls that Python does not count as whitespace (C0 but \t\n\v\f\r and \x1c–\x1f, DEL, C1 but
// NEL), and the zero-width no-break space, which JavaScript's \s would otherwise count as a space.
const CONTROL = /[\u0000-\u0008\u000e-\u001b\u007f-\u0084\u0086-\u009f\ufeff]/g;
// Python's str whitespace: JavaScript's \s plus \x1c–\x1f and NEL.
const WHITESPACE = /[\s\u001c-\u001f\u0085]+/gu;

/** CLIP's clean-up: unescape ×2, NFC, drop controls, collapse whitespace, trim, lowercase. */
export function clipTextClean(text: string): string {
  return htmlUnescape(htmlUnescape(text)).normalize('NFC').replace(CONTROL, '').replace(WHITESPACE, ' ').trim().toLowerCase();
}
