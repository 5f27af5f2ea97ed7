// The captioner on the tiny generated BLIP (daemon/onnx/tiny/blip-captioner.ts): the decoder's
// key/value cache gives the same logits as feeding the whole sequence, the beam search over the real
// sessions is deterministic and ends in the layout's eos, and the folder is found and validated.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tensor } from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TINY_CAPTIONER, TINY_CAPTIONER_DEFAULTS, writeTinyCaptioner } from '../../../../daemon/onnx/tiny/blip-captioner.js';
import { CAPTIONER_DEFAULTS, captionImage, captionerPixels, loadCaptioner } from '../../../../daemon/pipeline/captioner/blip.js';
import { findCaptioner, listCaptioners } from '../../../../daemon/pipeline/captioner/installed.js';
import { SessionCache } from '../../../../daemon/worker/sessions.js';

const NAME = 'tiny-blip';

function gradient(w: number, h: number, seed = 0): Uint8Array {
  const rgb = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const i = 3 * (y * w + x);
    rgb[i] = (x * 255) / (w - 1);
    rgb[i + 1] = (y * 255) / (h - 1);
    rgb[i + 2] = (seed * 37 + x * y) % 256;
  }
  return rgb;
}

describe('BLIP captioner (tiny model)', () => {
  let root: string;
  let sessions: SessionCache;
  let vocab: string[];
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'p2pz-captioner-'));
    ({ vocab } = await writeTinyCaptioner(join(root, CAPTIONER_DEFAULTS.folder, NAME)));
    sessions = new SessionCache({ modelsDir: root, executionProviders: ['cpu'], maxSessions: 4 });
  });
  afterAll(async () => {
    await sessions.releaseAll();
    await rm(root, { recursive: true, force: true });
  });

  it('is found under captioner/ and loads its token ids, size and normalization from the folder', async () => {
    expect(await listCaptioners(sessions)).toEqual([NAME]);
    expect(await findCaptioner(sessions)).toBe(NAME);
    const c = await loadCaptioner(sessions, NAME);
    expect([c.bosId, c.eosId, c.padId]).toEqual([vocab.indexOf('[DEC]'), vocab.indexOf('[SEP]'), 0]);
    expect([c.width, c.height]).toEqual([TINY_CAPTIONER.imageSize, TINY_CAPTIONER.imageSize]);
    expect(c.encoderPath).toBe(join('captioner', NAME, TINY_CAPTIONER_DEFAULTS.encoder));
    expect(c.tokenizer.encode('A Picture of cats!')).toEqual(['a', 'picture', 'of', 'cats', '[UNK]'].map((t) => vocab.indexOf(t)));
  });

  it('normalizes pixels as BLIP does: (p/255 − mean)/std, channel planes', async () => {
    const c = await loadCaptioner(sessions, NAME);
    const S = c.width;
    const flat = new Uint8Array(S * S * 3).fill(0);
    for (let p = 0; p < S * S; p++) flat.set([255, 128, 0], 3 * p);
    const x = await captionerPixels(c, flat, S, S);
    expect(x[0]).toBeCloseTo((1 - 0.48145466) / 0.26862954, 5);
    expect(x[S * S]).toBeCloseTo((128 / 255 - 0.4578275) / 0.26130258, 5);
    expect(x[2 * S * S + 7]).toBeCloseTo((0 - 0.40821073) / 0.27577711, 5);
  });

  it('the key/value cache gives the logits of the whole sequence fed at once', async () => {
    const c = await loadCaptioner(sessions, NAME);
    const enc = await sessions.run(c.encoderPath, { pixel_values: new Tensor('float32', await captionerPixels(c, gradient(40, 30), 40, 30), [1, 3, c.height, c.width]) });
    const image = enc['last_hidden_state']!;
    const [, P, Dv] = image.dims as [number, number, number];
    const H = TINY_CAPTIONER.textHeads;
    const dh = TINY_CAPTIONER.textWidth / H;
    const ids = [c.bosId, ...c.tokenizer.encode('a picture of a cat on the grass')];
    const feeds = (tokens: number[], past: number, cache: Record<string, Tensor>) => ({
      input_ids: new Tensor('int64', BigInt64Array.from(tokens, BigInt), [1, tokens.length]),
      attention_mask: new Tensor('int64', new BigInt64Array(past + tokens.length).fill(1n), [1, past + tokens.length]),
      encoder_hidden_states: new Tensor('float32', image.data as Float32Array, [1, P, Dv]),
      encoder_attention_mask: new Tensor('int64', new BigInt64Array(P).fill(1n), [1, P]),
      use_cache_branch: new Tensor('bool', Uint8Array.of(past > 0 ? 1 : 0), [1]),
      ...cache,
    });
    const empty: Record<string, Tensor> = {};
    for (let l = 0; l < TINY_CAPTIONER.textLayers; l++) for (const kv of ['key', 'value']) empty[`past_key_values.${l}.${kv}`] = new Tensor('float32', new Float32Array(0), [1, H, 0, dh]);
    const whole = await sessions.run(c.decoderPath, feeds(ids, 0, empty));
    const V = vocab.length;
    expect(whole['logits']!.dims).toEqual([1, ids.length, V]);
    // Prompt of 4, then one token at a time through the cache.
    let out = await sessions.run(c.decoderPath, feeds(ids.slice(0, 4), 0, empty));
    for (let t = 4; t < ids.length; t++) {
      const cache: Record<string, Tensor> = {};
      for (let l = 0; l < TINY_CAPTIONER.textLayers; l++) for (const kv of ['key', 'value']) cache[`past_key_values.${l}.${kv}`] = out[`present.${l}.${kv}`]!;
      out = await sessions.run(c.decoderPath, feeds([ids[t]!], t, cache));
      expect(out[`present.0.key`]!.dims).toEqual([1, H, t + 1, dh]);
      const step = out['logits']!.data as Float32Array;
      const ref = (whole['logits']!.data as Float32Array).subarray(t * V, (t + 1) * V);
      let worst = 0;
      for (let v = 0; v < V; v++) worst = Math.max(worst, Math.abs(step[v]! - ref[v]!));
      expect(worst).toBeLessThan(1e-4);
    }
  });

  it('captions deterministically with beam search: 3 beams, at most 30 tokens with the prompt, at least 10', async () => {
    const c = await loadCaptioner(sessions, NAME);
    const a = await captionImage(sessions, c, gradient(64, 48), 64, 48);
    const b = await captionImage(sessions, c, gradient(64, 48), 64, 48);
    expect(a).toEqual(b);
    expect(a.captioner).toBe(NAME);
    const promptLength = 1 + c.tokenizer.encode(CAPTIONER_DEFAULTS.prompt).length;
    expect(promptLength + a.ids.length).toBeLessThanOrEqual(CAPTIONER_DEFAULTS.maxLength);
    expect(promptLength + a.ids.length).toBeGreaterThanOrEqual(CAPTIONER_DEFAULTS.minLength);
    expect(a.ids).not.toContain(c.eosId);
    expect(a.caption.length).toBeGreaterThan(0);
    expect(a.caption).toBe(c.tokenizer.decode(a.ids, new Set([c.bosId, c.eosId, c.padId, vocab.indexOf('[CLS]'), vocab.indexOf('[MASK]')])).replace(/\s+/g, ' ').trim());
    const other = await captionImage(sessions, c, gradient(64, 48, 5), 64, 48);
    expect(other.ids).not.toEqual(a.ids);
  });

  it('a folder with a broken config is refused as E_MODEL_INVALID with a hint', async () => {
    const bad = join(root, CAPTIONER_DEFAULTS.folder, 'broken');
    await writeTinyCaptioner(bad);
    await writeFile(join(bad, 'config.json'), '{"text_config": {"bos_token_id": 999999}}');
    await expect(loadCaptioner(sessions, 'broken')).rejects.toMatchObject({ code: 'E_MODEL_INVALID', hint: expect.stringContaining('captioner/broken') });
    expect(await findCaptioner(sessions)).toBe('broken');
    await rm(bad, { recursive: true, force: true });
  });
});
