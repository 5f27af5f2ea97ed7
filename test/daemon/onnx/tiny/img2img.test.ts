import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TINY_IMG2IMG_IO, writeTinyImg2Img } from '../../../../daemon/onnx/tiny/img2img.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'p2pz-img2img-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function ramp(h: number, w: number): Float32Array {
  const x = new Float32Array(3 * h * w);
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.37) * 0.9;
  return x;
}

describe('writeTinyImg2Img', () => {
  it('loads in onnxruntime-node and maps [1,3,H,W] to [1,3,H,W] in [-1,1] at two sizes', async () => {
    const path = join(dir, 'gan.onnx');
    await writeTinyImg2Img(path, { seed: 3, channels: 8 });
    const session = await ort.InferenceSession.create(path);
    expect(session.inputNames).toEqual([TINY_IMG2IMG_IO.input]);
    expect(session.outputNames).toEqual([TINY_IMG2IMG_IO.output]);
    for (const [h, w] of [[16, 24], [40, 8]] as const) {
      const x = ramp(h, w);
      const out = await session.run({ [TINY_IMG2IMG_IO.input]: new ort.Tensor('float32', x, [1, 3, h, w]) });
      const y = out[TINY_IMG2IMG_IO.output];
      expect(y?.dims).toEqual([1, 3, h, w]);
      const data = y?.data as Float32Array;
      let diff = 0;
      for (let i = 0; i < data.length; i++) {
        expect(Math.abs(data[i] as number)).toBeLessThanOrEqual(1);
        diff += Math.abs((data[i] as number) - Math.tanh(x[i] as number));
      }
      // A translation, not the identity: the residual branch changes the image…
      expect(diff / data.length).toBeGreaterThan(1e-3);
      // …but keeps it recognisably close to tanh(x).
      expect(diff / data.length).toBeLessThan(0.5);
    }
    await session.release();
  });

  it('is reproducible: same seed gives the same bytes, another seed different ones', async () => {
    await writeTinyImg2Img(join(dir, 'a.onnx'), { seed: 7 });
    await writeTinyImg2Img(join(dir, 'b.onnx'), { seed: 7 });
    await writeTinyImg2Img(join(dir, 'c.onnx'), { seed: 8 });
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => readFile(join(dir, `${n}.onnx`))));
    expect(a?.equals(b as Buffer)).toBe(true);
    expect(a?.equals(c as Buffer)).toBe(false);
  });

  it('rejects a non-positive channel count', async () => {
    await expect(writeTinyImg2Img(join(dir, 'bad.onnx'), { channels: 0 })).rejects.toThrow(/channels/);
  });
});
