// Pins the seeded generator to CPython's `random` module (MT19937): the golden values below were
// produced by `random.Random(seed)` in CPython 3.11 (getrandbits(32), randrange, random, gauss, shuffle).
import { describe, expect, it } from 'vitest';
import { Rng } from '../../../daemon/pipeline/random.js';

describe('Rng (MT19937, CPython-compatible)', () => {
  it('produces the same 32-bit words as random.Random(seed).getrandbits(32)', () => {
    const r42 = new Rng(42);
    expect([r42.uint32(), r42.uint32(), r42.uint32()]).toEqual([2746317213, 478163327, 107420369]);
    const r0 = new Rng(0);
    expect([r0.uint32(), r0.uint32()]).toEqual([3626764237, 1654615998]);
    const rMax = new Rng(4294967295);
    expect([rMax.uint32(), rMax.uint32()]).toEqual([2728839433, 2661025012]);
  });

  it('stays on the reference stream across the 624-word regeneration', () => {
    const r = new Rng(1);
    for (let i = 0; i < 1000; i++) r.uint32();
    expect(r.uint32()).toBe(2160508093);
  });

  it('matches randrange, random and their interleaving', () => {
    const r = new Rng(7);
    expect(Array.from({ length: 8 }, () => r.randrange(1, 31))).toEqual([11, 5, 13, 21, 2, 3, 27, 18]);
    expect([r.randrange(0, 1), r.randrange(0, 1), r.randrange(1, 2)]).toEqual([0, 0, 1]);
    const u = new Rng(7);
    expect(u.random()).toBe(0.32383276483316237);
    expect(u.random()).toBe(0.15084917392450192);
  });

  it('matches gauss(0, 1) to the last few ulps', () => {
    const r = new Rng(123);
    const golden = [0.40422843322466656, 0.13801139264830412, -0.3985847224936054, 0.26274798902660246, 0.226886548661369];
    for (const g of golden) expect(Math.abs(r.normal() - g)).toBeLessThan(1e-15);
  });

  it('matches shuffle', () => {
    expect(new Rng(5).shuffle([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])).toEqual([2, 3, 1, 0, 8, 7, 6, 5, 4, 9]);
  });

  it('draws normals with mean 0 and variance 1', () => {
    const x = new Rng(9).fillNormal(new Float64Array(200_000));
    let s = 0;
    let s2 = 0;
    for (const v of x) {
      s += v;
      s2 += v * v;
    }
    const mean = s / x.length;
    expect(Math.abs(mean)).toBeLessThan(0.01);
    expect(Math.abs(s2 / x.length - mean * mean - 1)).toBeLessThan(0.01);
  });

  it('rejects seeds outside [0, 2^32-1] and empty ranges', () => {
    expect(() => new Rng(-1)).toThrow(RangeError);
    expect(() => new Rng(2 ** 32)).toThrow(RangeError);
    expect(() => new Rng(1.5)).toThrow(RangeError);
    expect(() => new Rng(1).randrange(3, 3)).toThrow(RangeError);
  });
});
