// The panel's uploads: each layer's image is uploaded once, keyed by layer and content, and the id is
// reused by its caption request, its previews and its renders (so the caption the panel shows is the
// daemon's caption of exactly the bytes the render reads). An upload the daemon no longer knows is
// sent again when the caller asks for a fresh one.
import type { ImageBytes } from '../../shared/protocol/index.js';
import type { DaemonApi } from './connection.js';

export class Uploads {
  /** Image ids of uploads, by `contentKey`. */
  private readonly ids = new Map<string, string>();

  async upload(client: Pick<DaemonApi, 'uploadImage'>, image: ImageBytes, fresh = false): Promise<string> {
    const key = contentKey(image);
    const known = this.ids.get(key);
    if (known !== undefined && !fresh) return known;
    const uploaded = await client.uploadImage(image.bytes, image.mime);
    this.ids.set(key, uploaded.imageId);
    return uploaded.imageId;
  }
}

/** "This exact image of this layer": the layer, the length and FNV-1a of the bytes. */
export function contentKey(image: Pick<ImageBytes, 'nodeId' | 'bytes'>): string {
  return `${image.nodeId}:${image.bytes.byteLength}:${fnv1a(image.bytes)}`;
}

/** FNV-1a over the bytes: a cheap key for "this exact image was uploaded already". */
function fnv1a(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i] ?? 0;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
