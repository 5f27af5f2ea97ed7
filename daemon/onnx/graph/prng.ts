// Seeded pseudo-random numbers for reproducible model weights: mulberry32 (uniform uint32), a
// Box–Muller transform (standard normals), and a stable 32-bit hash that derives one stream per tensor
// name, so a tensor's values depend only on (model seed, tensor name), not on the order of creation.

/** mulberry32: a 32-bit state PRNG; returns uniform uint32 values. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** FNV-1a over the UTF-16 code units of `s`, finished with a murmur3 avalanche. */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The seed of one tensor's stream: hash of the name mixed with the model seed. */
export function tensorSeed(modelSeed: number, name: string): number {
  return (hash32(name) ^ Math.imul(modelSeed >>> 0, 0x9e3779b1)) >>> 0;
}

/**
 * Standard normal samples by Box–Muller: u1, u2 ~ U(0,1) (open interval, from two uint32 draws),
 * z0 = √(−2 ln u1)·cos(2π u2), z1 = √(−2 ln u1)·sin(2π u2). Fills `out` with `mean + std·z`.
 * An odd-length fill keeps z1 as a spare for the next call, so the sequence does not depend on how a
 * tensor is split into chunks.
 */
export class NormalStream {
  private readonly next: () => number;
  private spare: number | undefined;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }

  fill(out: Float32Array, mean = 0, std = 1): Float32Array {
    const TWO_PI = 2 * Math.PI;
    const INV_2_32 = 1 / 4294967296;
    let i = 0;
    if (this.spare !== undefined && out.length > 0) {
      out[i++] = mean + std * this.spare;
      this.spare = undefined;
    }
    for (; i < out.length; i += 2) {
      const u1 = (this.next() + 0.5) * INV_2_32;
      const u2 = (this.next() + 0.5) * INV_2_32;
      const r = Math.sqrt(-2 * Math.log(u1));
      const theta = TWO_PI * u2;
      out[i] = mean + std * r * Math.cos(theta);
      const z1 = r * Math.sin(theta);
      if (i + 1 < out.length) out[i + 1] = mean + std * z1;
      else this.spare = z1;
    }
    return out;
  }
}
