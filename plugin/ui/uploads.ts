// The panel's uploads: each image is uploaded once, keyed by its bytes (whatever layer id a host gives
// them), and the id is reused by its caption request, its previews and its renders (so the caption the panel shows is the
// daemon's caption of exactly the bytes the render reads). An upload the daemon no longer knows is
// sent again when the caller asks for a fresh one.
import type { ImageBytes } from '../../shared/protocol/index.js';
import type { DaemonApi } from './connection.js';

export class Uploads {
  /** Image ids of uploads, by `bytesKey`. */
  private readonly ids = new Map<string, string>();

  async upload(client: Pick<DaemonApi, 'uploadImage'>, image: ImageBytes, fresh = false): Promise<string> {
    const key = bytesKey(image.bytes);
    const known = this.ids.get(key);
    if (known !== undefined && !fresh) return known;
    const uploaded = await client.uploadImage(image.bytes, image.mime);
    this.ids.set(key, uploaded.imageId);
    return uploaded.imageId;
  }
}

/** "These exact bytes", whichever layer holds them: the length and FNV-1a. */
export function bytesKey(bytes: Uint8Array): string {
  return `${bytes.byteLength}:${fnv1a(bytes)}`;
}

/** FNV-1a over the bytes. */
function fnv1a(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i] ?? 0;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
