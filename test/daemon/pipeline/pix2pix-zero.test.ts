// The whole pix2pix-zero edit on the generated tiny models (both exporters): a non-square RGBA input
// comes back at exactly its size with its alpha, byte-identical for a seed; `--dump` writes every
// file of docs/DUMP.md with its shape, and the dump's numbers obey the algorithm (DDIM inversion and edit
// steps recomputed here from the scheduler's formula); a second direction reuses the inversion; a
// cancel mid-edit never decodes; blending keeps the original's bytes where the mask is 0.
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EditParams, type Stage } from '../../../shared/protocol/index.js';
import { DumpMeta, DumpWriter } from '../../../daemon/pipeline/dump/dump-writer.js';
import { decodeNpy } from '../../../daemon/pipeline/dump/npy.js';
import { InversionCache } from '../../../daemon/pipeline/inversion-cache.js';
import { ClipTokenizer } from '../../../daemon/pipeline/text/clip-tokenizer.js';
import { runPix2PixZero, type DiffusionContext, type Pix2PixZeroResult } from '../../../daemon/pipeline/pix2pix-zero.js';
import { MODEL_NAME, pixels, rgbaPng, tinyModels, type TinyModels } from './tiny-pipeline.js';

const W = 70;
const H = 45;
const STEPS = 2;
/** 70×45 at long side 128 → 128×64 pixels, 16×8 latent. */
const SIZE = { H: 64, W: 128, h: 8, w: 16 };

function settings(extra: Partial<EditParams> = {}): EditParams {
  return EditParams.parse({ source: 'cat', target: 'dog', steps: STEPS, regSteps: 1, size: 128, seed: 3, ...extra });
}

function context(tiny: TinyModels, cache: InversionCache, events: Array<[Stage, number, number]> = [], signal = new AbortController().signal): DiffusionContext {
  return { models: tiny.counting, signal, progress: (s, k, n) => events.push([s, k, n]), inversionCache: cache };
}

/** ᾱ_t of SD 1.x's "scaled_linear" schedule, computed here independently. */
function alphaBar(t: number): number {
  let prod = 1;
  const lo = Math.sqrt(0.00085);
  const hi = Math.sqrt(0.012);
  for (let i = 0; i <= t; i++) prod *= 1 - (lo + ((hi - lo) * i) / 999) ** 2;
  return prod;
}

async function npy(dir: string, name: string): Promise<{ data: Float32Array | BigInt64Array; shape: readonly number[] }> {
  return decodeNpy(await readFile(join(dir, name)));
}

for (const flavour of ['opset14', 'opset17'] as const) {
  describe(`runPix2PixZero (tiny model, ${flavour})`, () => {
    let tiny: TinyModels;
    let input: Awaited<ReturnType<typeof rgbaPng>>;
    let dumpDir: string;
    let first: Pix2PixZeroResult;
    const cache = new InversionCache();
    beforeAll(async () => {
      tiny = await tinyModels(flavour);
      input = await rgbaPng(W, H);
      dumpDir = await mkdtemp(join(tmpdir(), 'p2pz-dump-'));
      first = await runPix2PixZero(
        { image: input.png, edit: settings(), model: MODEL_NAME, bankCount: 4, dump: new DumpWriter(dumpDir) },
        context(tiny, cache),
      );
    });
    afterAll(async () => {
      await tiny.dispose();
      await rm(dumpDir, { recursive: true, force: true });
    });

    it('returns the image at exactly the input size with its alpha, and a grayscale mask', async () => {
      expect(first.engine).toBe('diffusion');
      expect(first.details.workingSize).toEqual({ width: SIZE.W, height: SIZE.H });
      expect(first.details.caption).toBe('a photo of a cat');
      const image = first.outputs.find((o) => o.role === 'image')!;
      const mask = first.outputs.find((o) => o.role === 'mask')!;
      expect([image.width, image.height, mask.width, mask.height]).toEqual([W, H, W, H]);
      const px = await pixels(image.png);
      expect([px.width, px.height, px.channels]).toEqual([W, H, 4]);
      for (let p = 0; p < W * H; p++) expect(px.data[4 * p + 3]).toBe(input.raw[4 * p + 3]);
      const m = await pixels(mask.png);
      expect([m.width, m.height, m.channels]).toEqual([W, H, 1]);
      expect(Math.max(...m.data)).toBeGreaterThan(200);
      expect(Math.min(...m.data)).toBeLessThan(50);
      expect(first.details.unetCalls).toEqual({ inversion: STEPS, reference: STEPS, guidance: STEPS, edit: STEPS });
    });

    it('is byte-identical for the same seed (with the inversion reused, too)', async () => {
      const again = await runPix2PixZero({ image: input.png, edit: settings(), model: MODEL_NAME, bankCount: 4 }, context(tiny, new InversionCache()));
      const reused = await runPix2PixZero({ image: input.png, edit: settings(), model: MODEL_NAME, bankCount: 4 }, context(tiny, cache));
      expect(reused.details.inversionReused).toBe(true);
      for (const r of [again, reused]) {
        for (const role of ['image', 'mask'] as const) {
          const a = Buffer.from(first.outputs.find((o) => o.role === role)!.png);
          expect(Buffer.from(r.outputs.find((o) => o.role === role)!.png).equals(a)).toBe(true);
        }
      }
    });

    it('writes every file of docs/DUMP.md with its exact shape', async () => {
      const meta = DumpMeta.parse(JSON.parse(await readFile(join(dumpDir, 'meta.json'), 'utf8')));
      expect(meta).toMatchObject({
        steps: STEPS, timesteps: [501, 1], inversion_timesteps: [1, 501], cfg: 5, xa: 0.1, reg_steps: 1, ac_rolls: 5,
        lambda_ac: 20, lambda_kl: 20, edit_scale: 1, seed: 3, size: [SIZE.H, SIZE.W], latent_scale: 0.18215,
        vae_latent: 'mean', caption: 'a photo of a cat', source: 'cat', target: 'dog',
      });
      const lat = [1, 4, SIZE.h, SIZE.w];
      const expected: Record<string, readonly number[]> = {
        'image_in.npy': [1, 3, SIZE.H, SIZE.W], 'z0.npy': lat, 'caption_ids.npy': [1, 77], 'e_caption.npy': [1, 77, 32],
        'direction.npy': [1, 77, 32], 'zT.npy': lat, 'z_final.npy': lat, 'image_out.npy': [1, 3, SIZE.H, SIZE.W],
      };
      for (let k = 0; k < STEPS; k++) {
        const n = String(k).padStart(3, '0');
        Object.assign(expected, {
          [`inversion/${n}_eps.npy`]: lat, [`inversion/${n}_eps_reg.npy`]: lat, [`inversion/${n}_z.npy`]: lat,
          [`reference/${n}_z.npy`]: lat, [`edit/${n}_z.npy`]: lat, [`edit/${n}_grad.npy`]: [2, 4, SIZE.h, SIZE.w],
          [`edit/${n}_eps.npy`]: [2, 4, SIZE.h, SIZE.w], [`edit/${n}_loss.npy`]: [1],
        });
        const rolls = JSON.parse(await readFile(join(dumpDir, `inversion/${n}_rolls.json`), 'utf8')) as number[][][][];
        expect([rolls.length, rolls[0]!.length, rolls[0]![0]!.length, rolls[0]![0]![0]!.length]).toEqual([1, 5, 4, 1]);
      }
      for (const [name, shape] of Object.entries(expected)) {
        const arr = await npy(dumpDir, name);
        expect(arr.shape, name).toEqual(shape);
        expect(arr.data instanceof (name === 'caption_ids.npy' ? BigInt64Array : Float32Array), name).toBe(true);
      }
      expect((await readFile(join(dumpDir, 'sentences_source.txt'), 'utf8')).trimEnd().split('\n')).toHaveLength(4);
      expect((await readFile(join(dumpDir, 'sentences_target.txt'), 'utf8')).trimEnd().split('\n')).toHaveLength(4);
      expect((await readdir(join(dumpDir, 'edit'))).length).toBe(4 * STEPS);
      const ids = (await npy(dumpDir, 'caption_ids.npy')).data as BigInt64Array;
      const tokenizer = await ClipTokenizer.load(join(tiny.modelDir, 'tokenizer'));
      expect([...ids].map(Number)).toEqual([...tokenizer.encode('a photo of a cat').ids]);
    });

    it('the dump obeys the algorithm: inversion and edit steps recomputed from the DDIM formulas', async () => {
      const f = async (name: string) => (await npy(dumpDir, name)).data as Float32Array;
      const n = 4 * SIZE.h * SIZE.w;
      const close = (a: Float32Array, b: Float32Array | Float64Array) => {
        let worst = 0;
        for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
        return worst;
      };
      // Inversion step 0: ᾱ_prev = ᾱ[0] (set_alpha_to_one false) → ᾱ_1.
      const z0 = await f('z0.npy');
      const epsReg = await f('inversion/000_eps_reg.npy');
      const [aPrev, aT] = [alphaBar(0), alphaBar(1)];
      const inv = new Float64Array(n).map((_, i) => Math.sqrt(aT) * ((z0[i]! - Math.sqrt(1 - aPrev) * epsReg[i]!) / Math.sqrt(aPrev)) + Math.sqrt(1 - aT) * epsReg[i]!);
      expect(close(await f('inversion/000_z.npy'), inv)).toBeLessThan(1e-4);
      expect(close(await f('zT.npy'), await f(`inversion/${String(STEPS - 1).padStart(3, '0')}_z.npy`))).toBe(0);
      // Edit step 0 at t = 501 → 1: x⁰ = z − λ·grad₀, ε̂ = ε⁰ + w(ε¹ − ε⁰), DDIM from x⁰.
      const z = await f('edit/000_z.npy');
      expect(close(z, await f('zT.npy'))).toBe(0);
      const grad = await f('edit/000_grad.npy');
      const eps = await f('edit/000_eps.npy');
      const [a501, a1] = [alphaBar(501), alphaBar(1)];
      const next = new Float64Array(n).map((_, i) => {
        const x0 = z[i]! - 0.1 * grad[i]!;
        const e = eps[i]! + 5 * (eps[n + i]! - eps[i]!);
        return Math.sqrt(a1) * ((x0 - Math.sqrt(1 - a501) * e) / Math.sqrt(a501)) + Math.sqrt(1 - a1) * e;
      });
      expect(close(await f('edit/001_z.npy'), next)).toBeLessThan(1e-4);
      // The reference pass starts from z_T too, and the caption branch's gradient vanishes at step 0.
      expect(close(await f('reference/000_z.npy'), await f('zT.npy'))).toBe(0);
      expect(close(grad.subarray(0, n), new Float32Array(n))).toBeLessThan(1e-6);
      expect(close(grad.subarray(n), new Float32Array(n))).toBeGreaterThan(0);
    });

    it('a second direction on the same image reuses the inversion (no inversion UNet call)', async () => {
      tiny.counting.reset();
      const horse = await runPix2PixZero({ image: input.png, edit: settings({ target: 'horse' }), model: MODEL_NAME, bankCount: 4 }, context(tiny, cache));
      expect(horse.details.inversionReused).toBe(true);
      expect(horse.details.unetCalls.inversion).toBe(0);
      // Every UNet call goes through the one roles model: reference, guidance and edit per step.
      expect(tiny.counting.count(`${MODEL_NAME}/unet/model.onnx`)).toBe(0);
      expect(tiny.counting.count('model.xattn.') + tiny.counting.count('model.grad.')).toBe(0);
      expect(tiny.counting.count('model.roles.')).toBe(3 * STEPS);
      const other = await runPix2PixZero({ image: input.png, edit: settings({ target: 'horse', seed: 4 }), model: MODEL_NAME, bankCount: 4 }, context(tiny, cache));
      expect(other.details.inversionReused).toBe(false);
      expect(other.details.unetCalls.inversion).toBe(STEPS);
      expect(tiny.counting.count(`${MODEL_NAME}/unet/model.onnx`)).toBe(0);
      expect(tiny.counting.count('model.roles.')).toBe(3 * STEPS + 4 * STEPS);
    });

    it('a cancel during the edit stops at the next step and never decodes', async () => {
      tiny.counting.reset();
      const controller = new AbortController();
      const events: Array<[Stage, number, number]> = [];
      const ctx: DiffusionContext = {
        ...context(tiny, new InversionCache(), events, controller.signal),
        progress: (s, k, n) => {
          events.push([s, k, n]);
          if (s === 'edit' && k === 1) controller.abort();
        },
      };
      await expect(runPix2PixZero({ image: input.png, edit: settings({ steps: 3 }), model: MODEL_NAME, bankCount: 4 }, ctx)).rejects.toThrow(/abort/i);
      expect(events.at(-1)).toEqual(['edit', 1, 3]);
      expect(events.some(([s]) => s === 'vae-decode' || s === 'save')).toBe(false);
      expect(tiny.counting.count('vae_decoder')).toBe(0);
    });

    it('a caption naming a plural of the source still gives a mask; one without the word gives none and says so', async () => {
      expect(first.details.mask).toEqual({ available: true, match: 'exact', words: 'cat' });
      const plural = await runPix2PixZero({ image: input.png, edit: settings({ caption: 'two cats on a sofa' }), model: MODEL_NAME, bankCount: 4 }, context(tiny, cache));
      expect(plural.details.mask).toEqual({ available: true, match: 'plural', words: 'cats' });
      expect(plural.outputs.map((o) => o.role)).toEqual(['image', 'mask']);
      const none = await runPix2PixZero({ image: input.png, edit: settings({ caption: 'a photo of a sofa', blend: true }), model: MODEL_NAME, bankCount: 4 }, context(tiny, cache));
      expect(none.outputs.map((o) => o.role)).toEqual(['image']);
      expect(none.details.mask).toEqual({
        available: false,
        reason: 'The caption "a photo of a sofa" does not name "cat" (nor a plural of it), so no mask was made and the edit was not blended.',
      });
    });

    it('a 3:1 input is edited in a mirrored 2:1 frame and comes back at its own size; 1×1, 6000×300 and 300×2000 are refused', async () => {
      const wide = await rgbaPng(150, 50);
      const out = await runPix2PixZero({ image: wide.png, edit: settings({ mask: true }), model: MODEL_NAME, bankCount: 4 }, context(tiny, cache));
      expect(out.details.workingSize).toEqual({ width: 128, height: 64 });
      expect(out.details.content).toEqual({ left: 0, top: 10, width: 128, height: 43 });
      for (const o of out.outputs) expect([o.width, o.height]).toEqual([150, 50]);
      const px = await pixels(out.outputs.find((o) => o.role === 'image')!.png);
      for (let p = 0; p < 150 * 50; p++) expect(px.data[4 * p + 3]).toBe(wide.raw[4 * p + 3]);
      for (const [w, h] of [[1, 1], [6000, 300], [300, 2000]] as const) {
        const png = await sharp({ create: { width: w, height: h, channels: 3, background: { r: 9, g: 99, b: 199 } } }).png().toBuffer();
        const before = tiny.counting.count('unet');
        await expect(runPix2PixZero({ image: png, edit: settings(), model: MODEL_NAME, bankCount: 4 }, context(tiny, cache)))
          .rejects.toMatchObject({ code: 'E_BAD_REQUEST', hint: expect.stringMatching(/larger layer|Crop the layer/) });
        expect(tiny.counting.count('unet')).toBe(before);
      }
    });

    it('blend keeps the original bytes where the mask is 0 and takes the edit where it is 255', async () => {
      const blended = await runPix2PixZero({ image: input.png, edit: settings({ blend: true }), model: MODEL_NAME, bankCount: 4 }, context(tiny, cache));
      const mask = await pixels(blended.outputs.find((o) => o.role === 'mask')!.png);
      const out = await pixels(blended.outputs.find((o) => o.role === 'image')!.png);
      const edit = await pixels(first.outputs.find((o) => o.role === 'image')!.png);
      let zeros = 0;
      let full = 0;
      for (let p = 0; p < W * H; p++) {
        const m = mask.data[p]!;
        for (let c = 0; c < 3; c++) {
          if (m === 0) expect(out.data[4 * p + c]).toBe(input.raw[4 * p + c]);
          if (m === 255) expect(out.data[4 * p + c]).toBe(edit.data[4 * p + c]);
        }
        if (m === 0) zeros++;
        if (m === 255) full++;
        expect(out.data[4 * p + 3]).toBe(input.raw[4 * p + 3]);
      }
      expect(zeros).toBeGreaterThan(0);
      expect(full).toBeGreaterThan(0);
    });
  });
}
