// The panel's host inside Figma: the sandbox behind the schema-checked bridge. Results wider or taller
// than Figma's image limit are cut into tiles here, since the sandbox has no image decoder.
import { PROTOCOL_VERSION, type ImageBytes, type MaskMode } from '../../shared/protocol/index.js';
import { createBridge } from './bridge.js';
import type { HostPush, PanelHost, PanelResult } from './host.js';
import { toTiledImage } from './tiles.js';

export function createFigmaHost(parent: Window = window.parent, self: Window = window): PanelHost {
  let bridge: ReturnType<typeof createBridge> | null = null;
  const connected = (): ReturnType<typeof createBridge> => {
    if (bridge === null) throw new Error('The plugin has not started.');
    return bridge;
  };
  return {
    client: 'figma',
    start(onPush: (message: HostPush) => void): void {
      bridge = createBridge(onPush, parent, self);
    },
    async readImages(nodeIds: readonly string[]): Promise<ImageBytes[]> {
      const { images } = await connected().request({ v: PROTOCOL_VERSION, type: 'read-images', nodeIds: [...nodeIds] }, 'images');
      return images;
    },
    async place(maskMode: MaskMode, results: readonly PanelResult[]): Promise<string> {
      const items = [];
      for (const e of results) {
        items.push({
          nodeId: e.nodeId,
          read: e.read,
          edit: e.edit,
          image: await toTiledImage(e.image.bytes, e.image.width, e.image.height),
          mask: e.mask === null ? null : await toTiledImage(e.mask.bytes, e.mask.width, e.mask.height),
        });
      }
      const placed = await connected().request({ v: PROTOCOL_VERSION, type: 'place-results', maskMode, items }, 'placed');
      return `Placed ${placed.nodeIds.length} layer${placed.nodeIds.length === 1 ? '' : 's'} on the canvas.`;
    },
    saveToken(token: string | null): void {
      connected().send({ v: PROTOCOL_VERSION, type: 'save-token', token });
    },
    saveEndpoint(endpoint: string | null): void {
      connected().send({ v: PROTOCOL_VERSION, type: 'save-endpoint', endpoint });
    },
    notify(text: string): void {
      connected().send({ v: PROTOCOL_VERSION, type: 'notify', text, error: false });
    },
  };
}
