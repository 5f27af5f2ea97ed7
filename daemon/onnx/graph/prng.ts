// Seeded pseudo-random numbers for reproducible model weights: mulberry32 (uniform uint32), the
// ziggurat method (standard normals), and a stable 32-bit hash that derives one stream per tensor
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

// Ziggurat tables (Marsaglia & Tsang 2000, "The Ziggurat Method for Generating Random Variables",
// 128 layers): r is the start of the tail, v the area of each layer; kn[i] = ⌊(x_{i−1}/x_i)·2³¹⌋ is
// the fast-accept bound, wn[i] = x_i/2³¹ maps a signed 32-bit draw into layer i, fn[i] = exp(−x_i²/2).
const ZIG_R = 3.442619855899;
const ZIG_V = 9.91256303526217e-3;
const ZIG_M = 2147483648;
const ZIG = (() => {
  const kn = new Float64Array(128);
  const wn = new Float64Array(128);
  const fn = new Float64Array(128);
  let dn = ZIG_R;
  let tn = dn;
  const q = ZIG_V / Math.exp(-0.5 * dn * dn);
  kn[0] = Math.floor((dn / q) * ZIG_M);
  kn[1] = 0;
  wn[0] = q / ZIG_M;
  wn[127] = dn / ZIG_M;
  fn[0] = 1;
  fn[127] = Math.exp(-0.5 * dn * dn);
  for (let i = 126; i >= 1; i--) {
    dn = Math.sqrt(-2 * Math.log(ZIG_V / dn + Math.exp(-0.5 * dn * dn)));
    kn[i + 1] = Math.floor((dn / tn) * ZIG_M);
    tn = dn;
    fn[i] = Math.exp(-0.5 * dn * dn);
    wn[i] = dn / ZIG_M;
  }
  return { kn, wn, fn };
})();

/**
 * Standard normal samples z ~ N(0,1) by the ziggurat method on mulberry32 (one uint32 per sample in
 * ~99% of cases: hz = draw as int32, layer iz = hz & 127, accept z = hz·wn[iz] when |hz| < kn[iz]; the
 * rare rest goes through the wedge/tail test). About 4× faster than Box–Muller (which needs log, sqrt
 * and two uniforms per pair), which matters when streaming the ~860 M weights of an SD-1.5-shaped UNet.
 * `fill` writes `mean + std·z`; one draw sequence per stream, so chunking does not change the values.
 */
export class NormalStream {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  fill(out: Float32Array, mean = 0, std = 1): Float32Array {
    const { kn, wn } = ZIG;
    // mulberry32 inlined (same recurrence as `mulberry32` above): a call per draw costs more than
    // the arithmetic.
    let a = this.state;
    for (let i = 0; i < out.length; i++) {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = Math.imul(a ^ (a >>> 15), a | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      const hz = (t ^ (t >>> 14)) | 0;
      const iz = hz & 127;
      if (Math.abs(hz) < (kn[iz] as number)) {
        out[i] = mean + std * hz * (wn[iz] as number);
      } else {
        this.state = a;
        out[i] = mean + std * this.slowPath(hz, iz);
        a = this.state;
      }
    }
    this.state = a;
    return out;
  }

  private nextU32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    const a = this.state;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** U(0,1), open interval. */
  private uniform(): number {
    return (this.nextU32() + 0.5) / 4294967296;
  }

  /** Marsaglia & Tsang's `nfix`: the base strip's tail (x > r, sampled by Marsaglia's exponential
   *  method) and the wedges (accept x when a uniform point under the layer lies under exp(−x²/2)). */
  private slowPath(hz0: number, iz0: number): number {
    const { kn, wn, fn } = ZIG;
    let hz = hz0;
    let iz = iz0;
    for (;;) {
      let x = hz * (wn[iz] as number);
      if (iz === 0) {
        let y: number;
        do {
          x = -Math.log(this.uniform()) / ZIG_R;
          y = -Math.log(this.uniform());
        } while (y + y < x * x);
        return hz > 0 ? ZIG_R + x : -ZIG_R - x;
      }
      if ((fn[iz] as number) + this.uniform() * ((fn[iz - 1] as number) - (fn[iz] as number)) < Math.exp(-0.5 * x * x)) return x;
      hz = this.nextU32() | 0;
      iz = hz & 127;
      if (Math.abs(hz) < (kn[iz] as number)) return hz * (wn[iz] as number);
    }
  }
}
