// The panel's host inside Photopea: the page runs in Photopea's plugin panel (an iframe whose parent
// is www.photopea.com) and drives the document through the script channel. The "selection" is the
// active layer, read when the panel starts and whenever the pointer comes back to the panel; a job
// reads it again, exports just that layer, and its results are pasted as new layers at the layer's
// position. The daemon token is kept in the page's localStorage (the page's own origin is the daemon's).
import { PROTOCOL_VERSION, type ImageBytes, type MaskMode, type SelectionItem } from '../../shared/protocol/index.js';
import type { HostPush, PanelHost, PanelResult } from '../ui/host.js';
import { PhotopeaScriptError, type PhotopeaChannel } from './channel.js';
import { DocumentProblem, exportActiveLayer, pasteLayer, readActiveLayer, type Rect } from './document.js';
import { cropPng, dataUrl } from './png.js';

export const PHOTOPEA_HOST_DEFAULTS = Object.freeze({
  /** localStorage key of the daemon token. */
  tokenKey: 'p2pz.token',
});

/** "cat → dog (seed 42)"; previews say so: "cat → dog (preview, seed 42)" (as in Figma). */
export function resultName(edit: { source: string; target: string; seed: number; kind: 'preview' | 'render' }): string {
  const what = edit.kind === 'preview' ? `preview, seed ${edit.seed}` : `seed ${edit.seed}`;
  return `${edit.source} → ${edit.target} (${what})`;
}

/** The page comes from the daemon itself: when it stops answering, it was stopped after the page loaded. */
export const SERVED_PAGE_NOTE = 'This panel comes from the daemon: once it runs again, the panel reconnects by itself.';

export function createPhotopeaHost(channel: PhotopeaChannel, options: { port: number; endpoint?: string | null; storage: Storage | null; doc: Document; framed: boolean }): PanelHost {
  let push: (message: HostPush) => void = () => undefined;
  let nextId = 1;
  /** The last active layer as read (name and place) and the node id it was given: the same layer read
   *  again keeps its id, so the panel does not take it for a new image (and export it for a caption). */
  let last: { readonly key: string; readonly nodeId: string } | null = null;
  /** Where each read layer sat, by the node id its image was given. */
  const rects = new Map<string, Rect>();

  const readToken = (): string | null => {
    try {
      return options.storage?.getItem(PHOTOPEA_HOST_DEFAULTS.tokenKey) ?? null;
    } catch {
      return null;
    }
  };

  const refresh = async (): Promise<void> => {
    let items: SelectionItem[] = [];
    let problem: string | null = null;
    try {
      if (!options.framed) throw new DocumentProblem('Open this page from the p2pz button in Photopea (see docs/PHOTOPEA.md).');
      const layer = await readActiveLayer(channel);
      const key = JSON.stringify([layer.name, layer.rect]);
      if (last?.key !== key) last = { key, nodeId: `layer-${nextId++}` };
      items = [{ nodeId: last.nodeId, name: layer.name.slice(0, 500), width: layer.rect.width, height: layer.rect.height, read: 'export' }];
    } catch (err) {
      problem = err instanceof DocumentProblem || err instanceof PhotopeaScriptError ? err.message : 'Photopea did not answer. Reopen the plugin.';
    }
    push({ v: PROTOCOL_VERSION, type: 'selection', items, problem });
  };

  return {
    client: 'photopea',
    unreachableNote: SERVED_PAGE_NOTE,
    start(onPush) {
      push = onPush;
      push({ v: PROTOCOL_VERSION, type: 'init', token: readToken(), port: options.port, endpoint: options.endpoint ?? null, command: 'open', direction: null, edit: null, autoPreview: false });
      void refresh();
      options.doc.addEventListener('pointerenter', () => void refresh());
    },
    async readImages(nodeIds): Promise<ImageBytes[]> {
      const nodeId = nodeIds[0];
      if (nodeId === undefined) return [];
      // The active layer now (the designer may have picked another since the panel last looked).
      const layer = await readActiveLayer(channel);
      const png = await exportActiveLayer(channel);
      const bytes = await cropPng(new Uint8Array(png), layer.rect);
      rects.set(nodeId, layer.rect);
      return [{ nodeId, bytes, mime: 'image/png', read: 'export' }];
    },
    async place(maskMode: MaskMode, results: readonly PanelResult[]): Promise<string> {
      const names: string[] = [];
      for (const r of results) {
        const rect = rects.get(r.nodeId);
        if (rect === undefined) throw new Error('The layer this result belongs to is unknown; run the edit again.');
        const name = resultName(r.edit);
        // The mask first (hidden), then the result above it: the result ends up the active layer.
        if (maskMode !== 'none' && r.mask !== null) {
          await pasteLayer(channel, { url: await dataUrl(r.mask.bytes), left: rect.left, top: rect.top, width: rect.width, height: rect.height, name: `Mask · ${name}`, visible: false });
        }
        await pasteLayer(channel, { url: await dataUrl(r.image.bytes), left: rect.left, top: rect.top, width: rect.width, height: rect.height, name, visible: true });
        names.push(name);
      }
      void refresh();
      return names.length === 1 ? `Added the layer “${names[0] ?? ''}” in Photopea.` : `Added ${names.length} layers in Photopea.`;
    },
    saveToken(token) {
      try {
        if (token === null) options.storage?.removeItem(PHOTOPEA_HOST_DEFAULTS.tokenKey);
        else options.storage?.setItem(PHOTOPEA_HOST_DEFAULTS.tokenKey, token);
      } catch {
        // storage blocked: the pairing lasts until the panel closes
      }
    },
    notify() {
      // Photopea has no notices for plugins; the panel shows its own status.
    },
  };
}
