// The caption before the render: when one layer is chosen, the panel reads its image, uploads it (once,
// shared with its previews and renders: uploads.ts) and asks the daemon for a `caption` job, whose
// answer is the caption a render of the same bytes uses when the designer writes none. An
// E_MODEL_MISSING or E_MODEL_INVALID answer means edits use the template caption; the form writes it
// from the source word (templateCaption, the daemon's own). Captioner answers are remembered by the
// image's bytes (whatever layer id a host gives them), so choosing the same image again answers at once. Only the latest question is answered: an
// earlier one that is still out is cancelled and its late reply dropped. It touches no DOM.
import { P2pzError } from '../../shared/protocol/index.js';
import type { Connection, DaemonApi } from './connection.js';
import { randomId } from './daemon-client.js';
import type { PanelHost } from './host.js';
import { bytesKey, type Uploads } from './uploads.js';

export const CAPTION_REQUEST_DEFAULTS = Object.freeze({
  /** Captioner answers remembered (by image bytes). */
  remembered: 64,
});

/** Who writes the caption of the chosen image, as the daemon answered. */
export type CaptionAnswer =
  | { readonly origin: 'captioner'; readonly caption: string; readonly captioner: string }
  /** `why`: the daemon's words (no captioner installed, or it could not caption this image). */
  | { readonly origin: 'template'; readonly why: string };

export class CaptionRequests {
  private readonly known = new Map<string, CaptionAnswer>();
  /** Counts questions: an answer to an older one is dropped. */
  private generation = 0;
  /** The caption job still out, to cancel when a newer question comes. */
  private pendingJob: string | null = null;

  constructor(
    private readonly connection: Pick<Connection, 'client' | 'follow' | 'cancel'>,
    private readonly host: Pick<PanelHost, 'readImages'>,
    private readonly uploads: Uploads,
  ) {}

  /** The caption of layer `nodeId`'s image; null when a newer question (or `forget`) superseded it. */
  async ask(nodeId: string): Promise<CaptionAnswer | null> {
    const generation = this.supersede();
    const client = this.connection.client;
    if (client === null) return null;
    let answer: CaptionAnswer;
    let key: string | null = null;
    try {
      const [image] = await this.host.readImages([nodeId]);
      if (image === undefined || generation !== this.generation) return null;
      key = bytesKey(image.bytes);
      const known = this.known.get(key);
      if (known !== undefined) return known;
      let imageId = await this.uploads.upload(client, image);
      try {
        answer = await this.captionJob(client, imageId, generation);
      } catch (err) {
        // Uploads expire (and a restarted daemon forgets them): upload once more and ask again.
        if (!(err instanceof P2pzError) || err.code !== 'E_NOT_FOUND' || generation !== this.generation) throw err;
        imageId = await this.uploads.upload(client, image, true);
        answer = await this.captionJob(client, imageId, generation);
      }
    } catch (err) {
      if (generation !== this.generation) return null;
      const message = err instanceof Error ? err.message : String(err);
      answer = { origin: 'template', why: err instanceof P2pzError && (err.code === 'E_MODEL_MISSING' || err.code === 'E_MODEL_INVALID') ? message : `The caption could not be asked for: ${message}` };
    }
    if (generation !== this.generation) return null;
    if (answer.origin === 'captioner' && key !== null) this.remember(key, answer);
    return answer;
  }

  /** Drops the question still out (several layers chosen, or none). */
  forget(): void {
    this.supersede();
  }

  private supersede(): number {
    if (this.pendingJob !== null) this.connection.cancel(this.pendingJob);
    this.pendingJob = null;
    return ++this.generation;
  }

  private remember(key: string, answer: CaptionAnswer): void {
    this.known.delete(key);
    this.known.set(key, answer);
    while (this.known.size > CAPTION_REQUEST_DEFAULTS.remembered) this.known.delete(this.known.keys().next().value!);
  }

  /** Submits a caption job and waits for its end; a cancelled one (superseded) throws. */
  private async captionJob(client: DaemonApi, imageId: string, generation: number): Promise<CaptionAnswer> {
    const jobId = randomId('caption');
    const { ended, unwatch } = this.connection.follow<CaptionAnswer>(jobId, 'caption', (event, resolve, reject) => {
      if (event.type === 'finished') {
        const d = event.outcome.details;
        if (d?.caption === undefined || d.captioner === undefined) reject(new P2pzError('E_INTERNAL', 'The caption job finished without a caption.'));
        else resolve({ origin: 'captioner', caption: d.caption, captioner: d.captioner });
      } else if (event.type === 'error') reject(P2pzError.fromBody(event.error));
      else if (event.type === 'cancelled') reject(new P2pzError('E_SHUTTING_DOWN', 'The caption job was cancelled.'));
    });
    try {
      if (generation !== this.generation) throw new P2pzError('E_SHUTTING_DOWN', 'A newer caption was asked for.');
      this.pendingJob = jobId;
      await client.submitJob({ jobId, kind: 'caption', imageId });
      // Superseded while it was being submitted: the cancel went out before the job existed.
      if (generation !== this.generation) this.connection.cancel(jobId);
      return await ended;
    } finally {
      unwatch();
      if (this.pendingJob === jobId) this.pendingJob = null;
    }
  }
}
