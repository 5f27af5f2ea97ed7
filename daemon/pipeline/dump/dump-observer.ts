// The replay dump (docs/DUMP.md) as a step observer of the pix2pix-zero pipeline: each hook writes
// its files through a DumpSink, with the names and shapes of the dump format.
import type { EditInputs, EditStep, InversionStep, ReferenceStep, StepObserver } from '../step-observer.js';
import { stepName, type DumpMeta, type DumpSink } from './dump-writer.js';

export class DumpObserver implements StepObserver {
  /** Every inversion step goes into the dump, so a cached z_T is never used. */
  readonly needsInversion = true;
  readonly #sink: DumpSink;
  /** [1,4,h,w] and [1,3,H,W], known from `inputs`. */
  #latentDims: readonly number[] = [];
  #imageDims: readonly number[] = [];

  constructor(sink: DumpSink) {
    this.#sink = sink;
  }

  async inputs(i: EditInputs): Promise<void> {
    const sink = this.#sink;
    this.#latentDims = i.latentDims;
    this.#imageDims = [1, 3, i.size.height, i.size.width];
    const meta: DumpMeta = {
      steps: i.edit.steps,
      timesteps: [...i.timesteps],
      inversion_timesteps: [...i.timesteps].reverse(),
      cfg: i.edit.cfg,
      xa: i.edit.xa,
      reg_steps: i.edit.regSteps,
      ac_rolls: i.regularization.inner,
      lambda_ac: i.regularization.lambdaAc,
      lambda_kl: i.regularization.lambdaKl,
      edit_scale: i.edit.editScale,
      seed: i.edit.seed,
      size: [i.size.height, i.size.width],
      latent_scale: i.latentScale,
      vae_latent: i.vaeLatent,
      caption: i.caption,
      source: i.edit.source,
      target: i.edit.target,
    };
    await sink.json('meta.json', meta);
    await sink.array('image_in.npy', i.x, this.#imageDims);
    await sink.array('z0.npy', i.z0, i.latentDims);
    if (i.noise) await sink.array('z0_noise.npy', i.noise, i.latentDims);
    await sink.array('caption_ids.npy', BigInt64Array.from(i.captionIds, (v) => BigInt(v)), [1, i.T]);
    await sink.array('e_caption.npy', i.eC, [1, i.T, i.D]);
    await sink.array('direction.npy', i.delta, [1, i.T, i.D]);
    await sink.text('sentences_source.txt', i.banks.source);
    await sink.text('sentences_target.txt', i.banks.target);
  }

  async inversionStep(k: number, s: InversionStep): Promise<void> {
    const n = stepName(k);
    await this.#sink.array(`inversion/${n}_eps.npy`, s.eps, s.dims);
    await this.#sink.array(`inversion/${n}_eps_reg.npy`, s.epsReg, s.dims);
    await this.#sink.json(`inversion/${n}_rolls.json`, s.rolls);
    await this.#sink.array(`inversion/${n}_z.npy`, s.z, s.dims);
  }

  inverted(zT: Float32Array): Promise<void> {
    return this.#sink.array('zT.npy', zT, this.#latentDims);
  }

  async referenceStep(k: number, s: ReferenceStep): Promise<void> {
    const n = stepName(k);
    await this.#sink.array(`reference/${n}_z.npy`, s.z, this.#latentDims);
    // Beyond the paper's intermediates: the reference pass's ε, so a replay can follow its whole trajectory.
    await this.#sink.array(`reference/${n}_eps.npy`, s.eps, this.#latentDims);
  }

  async editStep(k: number, s: EditStep): Promise<void> {
    const n = stepName(k);
    const pair = [2, ...this.#latentDims.slice(1)];
    await this.#sink.array(`edit/${n}_z.npy`, s.z, this.#latentDims);
    await this.#sink.array(`edit/${n}_grad.npy`, s.grad, pair);
    await this.#sink.array(`edit/${n}_eps.npy`, s.eps, pair);
    await this.#sink.array(`edit/${n}_loss.npy`, Float32Array.of(s.loss), [1]);
  }

  edited(z: Float32Array): Promise<void> {
    return this.#sink.array('z_final.npy', z, this.#latentDims);
  }

  decoded(image: Float32Array): Promise<void> {
    return this.#sink.array('image_out.npy', image, this.#imageDims);
  }
}
