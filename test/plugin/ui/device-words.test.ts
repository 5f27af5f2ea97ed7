// What the panel says about the device: the footer in words ("GPU · WebGPU (Apple M2)"), its tooltip
// (why this device, why the others were skipped, how memory is planned), and the render's duration
// estimate before Render is pressed, from the renders the daemon has seen on this device.
import { describe, expect, it } from 'vitest';
import type { HealthResponse } from '../../../shared/protocol/index.js';
import { deviceDetails, estimateWords, healthSummary, outcomeCaption } from '../../../plugin/ui/view.js';

const base: HealthResponse = {
  v: 1,
  name: 'p2pz',
  version: '0.1.0',
  state: 'ready',
  device: { provider: 'cpu', reason: 'CUDA unavailable: not installed. WebGPU unavailable: no adapter.', skipped: [{ provider: 'cuda', reason: 'not installed' }, { provider: 'webgpu', reason: 'Failed to get a WebGPU adapter: No supported adapters' }], memory: 'Planned against the free system memory.' },
  worker: { state: 'ready', restarts: 0, recentCrashes: 0 },
  models: [{ name: 'sd', kind: 'diffusion' }] as HealthResponse['models'],
  queue: { running: 0, queued: 0 },
};
const webgpu: HealthResponse = { ...base, device: { provider: 'webgpu', reason: 'WebGPU started.', adapter: 'Apple M2' } };

describe('the device in words', () => {
  it('footer: CPU, or GPU · provider (adapter)', () => {
    expect(healthSummary(base)).toMatch(/^p2pz 0\.1\.0 · CPU · /);
    expect(healthSummary(webgpu)).toMatch(/^p2pz 0\.1\.0 · GPU · WebGPU \(Apple M2\) · /);
    expect(healthSummary({ ...base, device: { provider: 'dml', reason: 'r' } })).toContain(' · GPU · DirectML · ');
  });

  it('tooltip: the reason, each skipped provider, the memory plan', () => {
    expect(deviceDetails(base.device!)).toBe(
      'CUDA unavailable: not installed. WebGPU unavailable: no adapter.\nSkipped:\n· CUDA: not installed\n· WebGPU: Failed to get a WebGPU adapter: No supported adapters\nPlanned against the free system memory.',
    );
  });

  it('result caption names the provider', () => {
    expect(outcomeCaption({ results: [{ role: 'image', resultId: 'abcdefgh12', width: 1, height: 1 }], engine: 'diffusion', timings: { total: 2000 }, device: 'webgpu' } as never)).toBe('Full render · WebGPU · 2.0 s');
  });
});

describe('the render estimate', () => {
  const samples = [{ size: 512, steps: 50, secondsPerEvaluation: 16, overheadSeconds: 40 }];
  it('says "about 40 min" on the CPU from the last render at this size', () => {
    expect(estimateWords({ ...base, durations: samples }, { size: 512, steps: 50 })).toBe('Render: about 41 min on CPU (learned from past renders)');
    expect(estimateWords({ ...base, durations: samples }, { size: 512, steps: 10 })).toBe('Render: about 9 min on CPU (learned from past renders)');
  });

  it('scales from another size, and says so', () => {
    expect(estimateWords({ ...webgpu, durations: [{ ...samples[0]!, secondsPerEvaluation: 0.2, overheadSeconds: 10 }] }, { size: 256, steps: 50 })).toBe(
      'Render: about 20 s on GPU · WebGPU (Apple M2) (learned from past renders, scaled from 512 px)',
    );
  });

  it('says nothing before the first render on this device, or while the device starts', () => {
    expect(estimateWords(base, { size: 512, steps: 50 })).toBeNull();
    expect(estimateWords({ ...base, device: null, durations: samples }, { size: 512, steps: 50 })).toBeNull();
    expect(estimateWords(null, { size: 512, steps: 50 })).toBeNull();
  });
});
