// The pipeline's seeded random source: roll offsets for the autocorrelation loss, the VAE sampling
// noise, the sentence-bank shuffle. The algorithm is MT19937 (Matsumoto & Nishimura 1998) seeded and
// consumed exactly as CPython's `random` module does, so the same seed gives the same integers in
// `random.Random(seed)` and a PyTorch replay of a dump can regenerate them. Everything is 32-bit integer
// arithmetic (Math.imul, >>>) and IEEE-754 doubles, so the integer stream is identical on every
// platform; normal deviates use Box–Muller (V8's own fdlibm-derived Math.log/cos/sin, identical
// across platforms within V8; equal to CPython's `gauss` up to the last ulp of the libm in use).

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;
const TWO_PI = 2 * Math.PI;

/** The seeded generator. `seed` is an integer in [0, 2³²−1] (CPython: `random.seed(seed)`). */
export class Rng {
  readonly #mt = new Uint32Array(N);
  #mti = N + 1;
  #gaussNext: number | null = null;

  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new RangeError(`seed must be an integer in [0, 2^32-1], got ${seed}`);
    }
    // CPython's random_seed(): the key is the 32-bit words of |seed|, [0] for 0 → init_by_array.
    this.#initByArray([seed >>> 0]);
  }

  #initGenrand(s: number): void {
    const mt = this.#mt;
    mt[0] = s >>> 0;
    for (let i = 1; i < N; i++) {
      const prev = mt[i - 1]!;
      // mt[i] = 1812433253 * (mt[i-1] ^ (mt[i-1] >> 30)) + i  (mod 2^32)
      mt[i] = (Math.imul(1812433253, prev ^ (prev >>> 30)) + i) >>> 0;
    }
    this.#mti = N;
  }

  #initByArray(key: readonly number[]): void {
    const mt = this.#mt;
    this.#initGenrand(19650218);
    let i = 1;
    let j = 0;
    for (let k = Math.max(N, key.length); k > 0; k--) {
      const prev = mt[i - 1]!;
      mt[i] = ((mt[i]! ^ Math.imul(prev ^ (prev >>> 30), 1664525)) + key[j]! + j) >>> 0;
      i++;
      j++;
      if (i >= N) {
        mt[0] = mt[N - 1]!;
        i = 1;
      }
      if (j >= key.length) j = 0;
    }
    for (let k = N - 1; k > 0; k--) {
      const prev = mt[i - 1]!;
      mt[i] = ((mt[i]! ^ Math.imul(prev ^ (prev >>> 30), 1566083941)) - i) >>> 0;
      i++;
      if (i >= N) {
        mt[0] = mt[N - 1]!;
        i = 1;
      }
    }
    mt[0] = 0x80000000;
  }

  /** The next 32-bit output of MT19937 (CPython's genrand_uint32). */
  uint32(): number {
    const mt = this.#mt;
    if (this.#mti >= N) {
      let kk = 0;
      for (; kk < N - M; kk++) {
        const y = (mt[kk]! & UPPER_MASK) | (mt[kk + 1]! & LOWER_MASK);
        mt[kk] = mt[kk + M]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
      }
      for (; kk < N - 1; kk++) {
        const y = (mt[kk]! & UPPER_MASK) | (mt[kk + 1]! & LOWER_MASK);
        mt[kk] = mt[kk + (M - N)]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
      }
      const y = (mt[N - 1]! & UPPER_MASK) | (mt[0]! & LOWER_MASK);
      mt[N - 1] = mt[M - 1]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
      this.#mti = 0;
    }
    let y = mt[this.#mti++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** k random bits, 1 ≤ k ≤ 32 (CPython's getrandbits(k) for k ≤ 32). */
  #bits(k: number): number {
    return k === 32 ? this.uint32() : this.uint32() >>> (32 - k);
  }

  /** Uniform integer in [start, stop) by rejection (CPython's randrange(start, stop)); 0 < stop − start < 2³². */
  randrange(start: number, stop: number): number {
    const n = stop - start;
    if (!Number.isInteger(start) || !Number.isInteger(stop) || n <= 0 || n > 0xffffffff) {
      throw new RangeError(`empty or invalid range [${start}, ${stop})`);
    }
    const k = bitLength(n);
    let r = this.#bits(k);
    while (r >= n) r = this.#bits(k);
    return start + r;
  }

  /** Uniform double in [0, 1) with 53 random bits (CPython's random()). */
  random(): number {
    const a = this.uint32() >>> 5;
    const b = this.uint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  /** Standard normal deviate by Box–Muller, pairs cached (CPython's gauss(0, 1)). */
  normal(): number {
    const cached = this.#gaussNext;
    this.#gaussNext = null;
    if (cached !== null) return cached;
    const x2pi = this.random() * TWO_PI;
    const g2rad = Math.sqrt(-2 * Math.log(1 - this.random()));
    this.#gaussNext = Math.sin(x2pi) * g2rad;
    return Math.cos(x2pi) * g2rad;
  }

  /** Fills `out` with standard normal deviates (rounded to float32 when `out` is a Float32Array). */
  fillNormal<T extends Float32Array | Float64Array>(out: T): T {
    for (let i = 0; i < out.length; i++) out[i] = this.normal();
    return out;
  }

  /** Fisher–Yates shuffle in place (CPython's shuffle(x)). */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.randrange(0, i + 1);
      const tmp = items[i]!;
      items[i] = items[j]!;
      items[j] = tmp;
    }
    return items;
  }
}

/** Number of bits of a positive integer n < 2³² (Python's int.bit_length()). */
function bitLength(n: number): number {
  let k = 0;
  let v = n;
  while (v >= 1) {
    v = Math.floor(v / 2);
    k++;
  }
  return k;
}
