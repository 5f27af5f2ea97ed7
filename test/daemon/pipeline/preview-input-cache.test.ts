// The GAN preview's input cache (daemon/pipeline/preview-input-cache.ts): keyed by the bytes' SHA-256,
// least recently used out first within a byte budget, tensors kept per working size with their entry,
// and nothing larger than the budget kept; a decode under way is shared, a failed one keeps nothing and
// each waiting caller then decodes for itself.
import { describe, expect, it } from 'vitest';
import { PreviewInputCache, previewInputKey } from '../../../daemon/pipeline/preview-input-cache.js';

const input = (side: number) => ({ width: side, height: side, rgb: new Uint8Array(side * side * 3), alpha: null });

describe('PreviewInputCache', () => {
  it('keys by content: equal bytes, equal key; one byte changed, another', () => {
    const a = Uint8Array.from([1, 2, 3, 4]);
    expect(previewInputKey(a)).toBe(previewInputKey(Uint8Array.from([1, 2, 3, 4])));
    expect(previewInputKey(a)).not.toBe(previewInputKey(Uint8Array.from([1, 2, 3, 5])));
    expect(previewInputKey(a)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('drops the least recently used entries beyond its byte budget', async () => {
    const cache = new PreviewInputCache({ maxBytes: 3 * 300 });
    cache.set('a', input(10)); // 300 bytes each
    cache.set('b', input(10));
    cache.set('c', input(10));
    expect(cache.get('a')).toBeDefined(); // a is now the most recent
    cache.set('d', input(10));
    expect(cache.get('b')).toBeUndefined();
    expect(['a', 'c', 'd'].map((k) => cache.get(k) !== undefined)).toEqual([true, true, true]);
    expect(cache.bytes).toBe(900);
    expect([cache.hits, cache.misses]).toEqual([4, 1]);
  });

  it('keeps a tensor per working size with its entry, made once, and counts it against the budget', async () => {
    const cache = new PreviewInputCache({ maxBytes: 300 + 400 + 300 });
    const entry = cache.set('a', input(10));
    let made = 0;
    const make = async () => {
      made++;
      return new Float32Array(100);
    };
    const t1 = await cache.tensor(entry, 10, 10, make);
    expect(await cache.tensor(entry, 10, 10, make)).toBe(t1);
    expect(made).toBe(1);
    expect(cache.bytes).toBe(700);
    cache.set('b', input(10)); // 1000 bytes: fits
    expect(cache.bytes).toBe(1000);
    // 100 more bytes would exceed the budget with b kept: b goes (a is the entry being added to).
    expect(await cache.tensor(entry, 5, 5, async () => new Float32Array(25))).toHaveLength(25);
    expect(cache.get('b')).toBeUndefined();
    expect(cache.bytes).toBe(800);
    // A tensor that would not fit beside its own entry is handed back, not kept.
    expect(await cache.tensor(entry, 20, 20, async () => new Float32Array(100))).toHaveLength(100);
    expect(cache.bytes).toBe(800);
    expect(made).toBe(1);
  });

  it('shares a decode under way, and says how each caller found the input', async () => {
    const cache = new PreviewInputCache();
    let decodes = 0;
    const decode = async () => {
      decodes++;
      await new Promise((resolve) => setTimeout(resolve, 1));
      return input(10);
    };
    const [a, b] = await Promise.all([cache.decoded('k', decode), cache.decoded('k', decode)]);
    expect([a.source, b.source]).toEqual(['decoded', 'joined']);
    expect(b.input).toBe(a.input);
    expect((await cache.decoded('k', decode)).source).toBe('kept');
    expect(decodes).toBe(1);
  });

  it('keeps nothing of a failed decode; a caller that waited for it decodes for itself', async () => {
    const cache = new PreviewInputCache();
    const failing = async () => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      throw new Error('damaged');
    };
    let own = 0;
    const first = cache.decoded('k', failing);
    const second = cache.decoded('k', async () => {
      own++;
      return input(10);
    });
    await expect(first).rejects.toThrow('damaged');
    expect((await second).source).toBe('decoded');
    expect(own).toBe(1);
    const again = cache.decoded('j', failing);
    const waiting = cache.decoded('j', failing);
    await expect(again).rejects.toThrow('damaged');
    await expect(waiting).rejects.toThrow('damaged');
    expect(cache.has('j')).toBe(false);
    expect(cache.bytes).toBe(300);
  });

  it('keeps nothing larger than its budget', async () => {
    const cache = new PreviewInputCache({ maxBytes: 100 });
    const entry = cache.set('big', input(10));
    expect(cache.get('big')).toBeUndefined();
    expect(await cache.tensor(entry, 2, 2, async () => new Float32Array(12))).toHaveLength(12);
    expect(cache.bytes).toBe(0);
  });
});
