// The panel's host on the standalone page (the daemon's root): the "layer" is an image the designer
// drops or picks, results are compared before/after on the page, and "Apply" downloads the result
// (and the mask). The page is served by the daemon itself, so it talks to it same-origin; it pairs by
// code like the plugins and keeps the token in localStorage.
import { PROTOCOL_VERSION, type ImageBytes, type MaskMode } from '../../shared/protocol/index.js';
import type { ImageMime } from '../ui/daemon-client.js';
import type { HostPush, PanelHost, PanelResult } from '../ui/host.js';

export const WEB_HOST_DEFAULTS = Object.freeze({
  /** localStorage key of the daemon token. */
  tokenKey: 'p2pz.token',
  /** Image types the daemon takes. */
  mimes: ['image/png', 'image/jpeg', 'image/webp'] as readonly ImageMime[],
  /** Files above this size are refused here already (the daemon's own limit decides the rest). */
  maxBytes: 50 * 1024 * 1024,
  emptyText: 'Drop an image on the page, or pick one.',
});

export interface PickedImage {
  readonly name: string;
  readonly bytes: Uint8Array;
  readonly mime: ImageMime;
  readonly width: number;
  readonly height: number;
  readonly url: string;
}

/** The page's elements the host fills in. */
export interface WebStage {
  showOriginal(image: PickedImage): void;
  /** A picked file was refused while an image is loaded: say why (that image stays). */
  showRefusal(text: string): void;
  showResults(results: readonly PanelResult[]): void;
}

/** "photo-cat-to-dog-seed-42.png": the picked file's name, the edit, and the seed. */
export function downloadName(original: string, edit: PanelResult['edit'], mask: boolean): string {
  const safe = (s: string): string => s.replace(/[^\p{L}\p{N}._-]+/gu, '-');
  const file = original.split(/[\\/]/).pop() ?? '';
  const base = safe(file.replace(/\.[\p{L}\p{N}]{1,5}$/u, '')).replace(/^[.-]+/, '') || 'image';
  const words = `${edit.source}-to-${edit.target}`;
  return `${base}-${safe(words)}${edit.kind === 'preview' ? '-preview' : ''}-seed-${edit.seed}${mask ? '-mask' : ''}.png`;
}

export function createWebHost(options: { port: number; endpoint?: string | null; storage: Storage; doc: Document; stage: WebStage }): PanelHost & { pick(file: File): Promise<void> } {
  let push: (message: HostPush) => void = () => undefined;
  let picked: PickedImage | null = null;
  let nextId = 1;
  /** The file name each read image came from (results keep it even after another image is picked). */
  const names = new Map<string, string>();

  const select = (image: PickedImage | null, problem: string | null): void => {
    const items = image === null ? [] : [{ nodeId: `file-${nextId++}`, name: image.name.slice(0, 500), width: image.width, height: image.height, read: 'image-fill' as const }];
    push({ v: PROTOCOL_VERSION, type: 'selection', items, problem: image === null ? (problem ?? WEB_HOST_DEFAULTS.emptyText) : null });
  };

  const save = (bytes: Uint8Array, name: string): void => {
    const a = options.doc.createElement('a');
    a.href = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'image/png' }));
    a.download = name;
    a.hidden = true;
    options.doc.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
  };

  return {
    client: 'web',
    resultsFollowSelection: true,
    unreachableNote: 'This page comes from the daemon: once it runs again, the page reconnects by itself.',
    start(onPush) {
      push = onPush;
      let token: string | null = null;
      try {
        token = options.storage.getItem(WEB_HOST_DEFAULTS.tokenKey);
      } catch {
        // storage blocked: pair again each visit
      }
      push({ v: PROTOCOL_VERSION, type: 'init', token, port: options.port, endpoint: options.endpoint ?? null, command: 'open', direction: null, edit: null, autoPreview: false });
      select(null, null);
    },
    async pick(file: File): Promise<void> {
      // With no image yet the selection line says why; with one, it keeps naming that image, so the
      // page says it beside the image.
      const refuse = (text: string): void => (picked === null ? select(null, text) : options.stage.showRefusal(text));
      const mime = WEB_HOST_DEFAULTS.mimes.find((m) => m === file.type);
      if (mime === undefined) return refuse(`${file.name} is not a PNG, JPEG or WebP image.`);
      if (file.size > WEB_HOST_DEFAULTS.maxBytes) return refuse(`${file.name} is larger than 50 MB.`);
      const bytes = new Uint8Array(await file.arrayBuffer());
      let size: { width: number; height: number };
      try {
        const bitmap = await createImageBitmap(file);
        size = { width: bitmap.width, height: bitmap.height };
        bitmap.close();
      } catch {
        return refuse(`${file.name} could not be read as an image.`);
      }
      if (picked !== null) URL.revokeObjectURL(picked.url);
      picked = { name: file.name, bytes, mime, ...size, url: URL.createObjectURL(file) };
      options.stage.showOriginal(picked);
      select(picked, null);
    },
    async readImages(nodeIds): Promise<ImageBytes[]> {
      const image = picked;
      const nodeId = nodeIds[0];
      if (image === null || nodeId === undefined) return [];
      names.set(nodeId, image.name);
      return [{ nodeId, bytes: image.bytes, mime: image.mime, read: 'image-fill' }];
    },
    async place(maskMode: MaskMode, results: readonly PanelResult[]): Promise<string> {
      let files = 0;
      for (const r of results) {
        const original = names.get(r.nodeId) ?? 'image';
        save(r.image.bytes, downloadName(original, r.edit, false));
        files++;
        if (maskMode !== 'none' && r.mask !== null) {
          save(r.mask.bytes, downloadName(original, r.edit, true));
          files++;
        }
      }
      return files === 1 ? 'Downloaded the result.' : 'Downloaded the result and its mask.';
    },
    saveToken(token) {
      try {
        if (token === null) options.storage.removeItem(WEB_HOST_DEFAULTS.tokenKey);
        else options.storage.setItem(WEB_HOST_DEFAULTS.tokenKey, token);
      } catch {
        // storage blocked
      }
    },
    notify() {
      // The panel's status line says it all on this page.
    },
    showResults(results) {
      options.stage.showResults(results);
    },
  };
}
