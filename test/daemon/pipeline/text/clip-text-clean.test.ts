// CLIP's text clean-up: the cases mirror Python's html.unescape and CLIP's whitespace_clean + lower().
import { describe, expect, it } from 'vitest';
import { clipTextClean, htmlUnescape } from '../../../../daemon/pipeline/text/clip-text-clean.js';

describe('htmlUnescape', () => {
  it('decodes named, decimal and hex references', () => {
    expect(htmlUnescape('a &lt;b&gt; &amp; &quot;c&quot; &#39;d&#39; &#x41;&#X42; &hellip;')).toBe('a <b> & "c" \'d\' AB …');
  });

  it('maps C1 references as Windows-1252 and invalid code points to U+FFFD (as html.unescape)', () => {
    expect(htmlUnescape('&#128;&#150;&#x93;')).toBe('€–“');
    expect(htmlUnescape('&#0;&#xD800;&#1114112;')).toBe('\ufffd\ufffd\ufffd');
  });

  it('leaves unknown entities and bare ampersands alone', () => {
    expect(htmlUnescape('cats & dogs &notanentity; &amp')).toBe('cats & dogs &notanentity; &amp');
  });
});

describe('clipTextClean', () => {
  it('collapses whitespace, trims and lowercases', () => {
    expect(clipTextClean('  A  Photo\tof\n\na   CAT \u00a0 ')).toBe('a photo of a cat');
  });

  it('unescapes twice, as CLIP does', () => {
    expect(clipTextClean('Tom &amp;amp; Jerry')).toBe('tom & jerry');
  });

  it('normalizes to NFC and drops control characters', () => {
    expect(clipTextClean('Cafe\u0301\u0007')).toBe('café');
    expect(clipTextClean('\ufeffdog\u0085cat')).toBe('dog cat');
  });
});
