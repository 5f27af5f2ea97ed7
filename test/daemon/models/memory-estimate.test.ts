// The memory estimate (docs/SECURITY.md §R17), pinned by the formula worked out by hand for SD 1.x at 512×512, and the
// refusal with a fake small budget: the hint names a size that fits, or says the weights alone do not.
import { describe, expect, it } from 'vitest';
import { P2pzError } from '../../../shared/protocol/index.js';
import { checkJobFits, estimateJobMemory, inferChannels, MEMORY_ESTIMATE_DEFAULTS, type JobShape, type ModelFootprint } from '../../../daemon/models/memory-estimate.js';

const GiB = 2 ** 30;
/** SD 1.x: 859.5 M UNet parameters (3.438 GB), 600 MB of text encoder and VAE. */
const SD1X: ModelFootprint = {
  unetBytes: 3_438_000_000,
  otherBytes: 600_000_000,
  heads: 8,
  siteFractions: MEMORY_ESTIMATE_DEFAULTS.sd1xSiteFractions,
  tokens: 77,
  channels: 320,
};
const RENDER_512: JobShape = { kind: 'render', height: 512, width: 512, batch: 2 };
/** Working side → measured peak RSS (GiB) of the UNet part of an SD-1.5-shaped edit (see the test). */
const MEASURED_PEAKS_GIB: readonly (readonly [number, number])[] = [[256, 4.31], [512, 4.74], [512, 4.83]];

function refusal(fn: () => unknown): P2pzError {
  try {
    fn();
  } catch (e) {
    if (e instanceof P2pzError) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}

describe('estimateJobMemory', () => {
  it('infers the first block width from the parameter count (320 for SD 1.x)', () => {
    expect(inferChannels(3_438_000_000)).toBeCloseTo(320, 9);
    expect(inferChannels(3_438_000_000 / 4)).toBeCloseTo(160, 9);
  });

  it('SD 1.x render at 512×512, batch 2', () => {
    // Latent 64×64: hw = 4096; sites: 5 at q = 4096, 5 at 1024, 5 at 256, 1 at 64.
    // The gradient graph recomputes the level-0 and level-1 self-attention (q = 4096 ≥ 2·4·d, d = 40;
    // q = 1024 ≥ 2·4·80), keeps the others (256 < 2·4·160, 64 < 2·4·160) and every cross-attention:
    // Σ k·q² = 5·65536 + 4096 = 331776, + Σ 77·q = 77·26944 = 2074688 → 2406464.
    // S = 4·2·8·4096² = 1073741824 > 64 MiB: 16 blocks, β = 67108864.
    // A_g = 4·2·8·2406464 + 4·2·95·320·4096 + 5·67108864 = 154013696 + 996147200 + 335544320 = 1485705216
    // A_f = 2·67108864 + 4·2·24·320·4096 = 134217728 + 251658240 = 385875968
    // W = 3438000000 + 600000000 = 4038000000 (one UNet session: the roles model); overhead 768 MiB = 805306368.
    const e = estimateJobMemory(SD1X, RENDER_512);
    expect(e.weightsBytes).toBe(4_038_000_000);
    expect(e.activationBytes).toBe(1_485_705_216);
    expect(e.totalBytes).toBe(4_038_000_000 + 1_485_705_216 + 805_306_368);
  });

  it('a preview holds one UNet and only the forward working set', () => {
    const e = estimateJobMemory(SD1X, { ...RENDER_512, kind: 'preview' });
    expect(e.weightsBytes).toBe(3_438_000_000 + 600_000_000);
    expect(e.activationBytes).toBe(385_875_968);
  });

  it('grows with the pixel count, not with its square, once attention runs in blocks', () => {
    const small = estimateJobMemory(SD1X, { ...RENDER_512, height: 256, width: 256 }).activationBytes;
    const large = estimateJobMemory(SD1X, RENDER_512).activationBytes;
    expect(large / small).toBeGreaterThan(2);
    expect(large / small).toBeLessThan(4.5);
  });

  it('matches the measured peak of an SD-1.5-shaped edit within 20% (docs/BENCHMARKS.md, bench edit-memory)', () => {
    // Measured: max RSS of one process holding the roles model of the SD-1.5-shaped UNet (graph
    // 1199130 B + weights 3446278144 B, no text encoder or VAE) through one edit step, onnxruntime
    // CPU provider: `npm run bench edit-memory -- --sizes 256,512 --configs after --steps 4` → 4.31 GiB
    // at 256² (set when the session opens), and at 512² 4.74 GiB after the first step's gradient,
    // 4.83 GiB through four steps (query blocks; recomputed elementwise tensors, GroupNorm outputs,
    // GEGLU halves, level-1 probabilities and self-attention's Q, K, V; gradient-free backward nodes
    // gated; shape operands computed at run time).
    const unetBytes = 1_199_130 + 3_446_278_144;
    const fp: ModelFootprint = { ...SD1X, unetBytes, otherBytes: 0, channels: inferChannels(unetBytes) };
    for (const [side, measuredGiB] of MEASURED_PEAKS_GIB) {
      const e = estimateJobMemory(fp, { ...RENDER_512, height: side, width: side });
      expect(e.totalBytes / (measuredGiB * GiB), `${side}²`).toBeGreaterThan(0.8);
      expect(e.totalBytes / (measuredGiB * GiB), `${side}²`).toBeLessThan(1.2);
    }
  });
});

describe('checkJobFits', () => {
  it('refuses a render that does not fit a small budget, naming the largest size that does', () => {
    const free = 6 * GiB;
    const err = refusal(() => checkJobFits(SD1X, RENDER_512, free));
    expect(err.code).toBe('E_JOB_TOO_LARGE');
    expect(err.status).toBe(507);
    expect(err.message).toContain('It needs about 6.3 GB at 512×512; 6.4 GB is free.');
    const size = Number(/--size (\d+)/.exec(err.hint)?.[1]);
    const usable = free * MEMORY_ESTIMATE_DEFAULTS.usableFraction;
    expect(estimateJobMemory(SD1X, { ...RENDER_512, height: size, width: size }).totalBytes).toBeLessThanOrEqual(usable);
    const bigger = MEMORY_ESTIMATE_DEFAULTS.hintSizes.filter((s) => s > size && s < 512);
    for (const s of bigger) expect(estimateJobMemory(SD1X, { ...RENDER_512, height: s, width: s }).totalBytes).toBeGreaterThan(usable);
  });

  it('says when the weights alone do not fit', () => {
    const err = refusal(() => checkJobFits(SD1X, RENDER_512, 4 * GiB));
    expect(err.code).toBe('E_JOB_TOO_LARGE');
    expect(err.hint).toContain("The model's weights alone need about 4.0 GB");
  });

  it('accepts what fits, and refuses nothing when the free memory is unknown', () => {
    expect(checkJobFits(SD1X, RENDER_512, 64 * GiB).totalBytes).toBe(estimateJobMemory(SD1X, RENDER_512).totalBytes);
    expect(() => checkJobFits(SD1X, RENDER_512, undefined)).not.toThrow();
  });
});
