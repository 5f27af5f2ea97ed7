import { describe, expect, it } from 'vitest';
import { HELD_UPLOADS_DEFAULTS, HeldUploads } from '../../../daemon/worker/held-uploads.js';

describe('HeldUploads', () => {
  it('keeps at most maxUploads, dropping the least recently used first', () => {
    const held = new HeldUploads();
    const ids = Array.from({ length: HELD_UPLOADS_DEFAULTS.maxUploads }, (_, k) => `upload_${k}0000`);
    for (const id of ids) expect(held.add(id, 10)).toEqual([]);
    expect(held.use(ids[0]!)).toBe(true); // now the most recently used
    expect(held.add('upload_new0000', 10)).toEqual([ids[1]]);
    expect(held.use(ids[1]!)).toBe(false);
    expect(held.size).toBe(HELD_UPLOADS_DEFAULTS.maxUploads);
    expect(held.bytes).toBe(10 * HELD_UPLOADS_DEFAULTS.maxUploads);
  });

  it('keeps within maxBytes, drops as many as it takes, and holds nothing larger than the bound', () => {
    const held = new HeldUploads({ maxUploads: 10, maxBytes: 100 });
    expect(held.add('upload_a0000000', 40)).toEqual([]);
    expect(held.add('upload_b0000000', 40)).toEqual([]);
    expect(held.add('upload_c0000000', 90)).toEqual(['upload_a0000000', 'upload_b0000000']);
    expect(held.bytes).toBe(90);
    expect(held.add('upload_d0000000', 101)).toBeUndefined();
    expect(held.use('upload_d0000000')).toBe(false);
    expect(held.use('upload_c0000000')).toBe(true);
  });

  it('counts an upload added again once, at its new size', () => {
    const held = new HeldUploads({ maxUploads: 2, maxBytes: 100 });
    held.add('upload_a0000000', 30);
    held.add('upload_b0000000', 30);
    expect(held.add('upload_a0000000', 50)).toEqual([]);
    expect(held.size).toBe(2);
    expect(held.bytes).toBe(80);
  });
});
