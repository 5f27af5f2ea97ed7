/// <reference path="../../node_modules/@figma/plugin-typings/plugin-api.d.ts" />
// The browser side of the Figma emulation (bundled by host-page.ts): it plays Figma's part around the
// plugin. The built sandbox (dist/plugin/code.js) runs on the figma-api-stub shim in this page; the
// built UI (dist/plugin/ui.html) runs in a sandboxed srcdoc iframe (origin `null`, as Figma's plugin
// iframe), with Figma's UI2 theme variables injected as `themeColors` does; messages are relayed
// both ways as `{pluginMessage}`. Tests drive it through `window.p2pzHost`.
import { createFigmaShim, type FigmaShim } from './figma-shim.js';

export interface HostLayer {
  readonly name: string;
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
  readonly rotation?: number;
  /** PNG as base64: an image fill, or (for `frame`) what exportAsync returns. */
  readonly png: string;
  readonly kind: 'image' | 'frame';
}

export interface LayerSummary {
  readonly id: string;
  readonly type: string;
  readonly name: string;
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
  readonly rotation: number;
  readonly visible: boolean;
  readonly isMask: boolean;
  readonly maskType: string;
  readonly imageSize: { width: number; height: number } | null;
  readonly edit: string;
  readonly relaunch: Record<string, string>;
  readonly children: LayerSummary[];
}

/** Figma's UI2 light theme variables (a subset), as `themeColors: true` injects them. */
const THEME = `<style id="figma-style">:root{--figma-color-bg:#ffffff;--figma-color-bg-secondary:#f5f5f5;--figma-color-bg-tertiary:#e6e6e6;--figma-color-bg-hover:#f5f5f5;--figma-color-bg-brand:#0d99ff;--figma-color-bg-brand-hover:#007be5;--figma-color-bg-disabled:#d9d9d9;--figma-color-bg-danger-tertiary:#fff1ee;--figma-color-text:#000000e6;--figma-color-text-secondary:#00000080;--figma-color-text-disabled:#0000004d;--figma-color-text-onbrand:#ffffff;--figma-color-text-danger:#dc3412;--figma-color-border:#e6e6e6;--figma-color-border-strong:#2c2c2c;--figma-color-border-selected:#0d99ff;--figma-color-icon:#000000e6;--figma-color-icon-success:#14ae5c;--figma-color-icon-danger:#f24822;--figma-color-icon-warning:#ffcd29}</style>`;

function bytes(base64: string): Uint8Array {
  const s = atob(base64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function summary(node: SceneNode, shim: FigmaShim): LayerSummary {
  const n = node as SceneNode & Partial<GeometryMixin & BlendMixin & ChildrenMixin>;
  const fill = Array.isArray(n.fills) ? (n.fills as Paint[])[0] : undefined;
  let imageSize: { width: number; height: number } | null = null;
  if (fill?.type === 'IMAGE' && fill.imageHash) {
    const header = shim.imageHeader(fill.imageHash);
    imageSize = header;
  }
  return {
    id: node.id,
    type: node.type,
    name: node.name,
    x: node.x,
    y: node.y,
    width: node.width,
    height: node.height,
    rotation: (node as SceneNode & LayoutMixin).rotation,
    visible: node.visible,
    isMask: n.isMask === true,
    maskType: String(n.maskType),
    imageSize,
    edit: node.getPluginData('p2pz.edit') ?? '',
    relaunch: node.getRelaunchData(),
    children: (n.children ?? []).map((c) => summary(c, shim)),
  };
}

const host = {
  shim: null as FigmaShim | null,
  /** Starts the plugin: the UI iframe first (as Figma loads it), then the sandbox's `run`. */
  async start(options: { port: number; layers: HostLayer[]; select: string[]; token?: string; endpoint?: string; command?: string; parameters?: Record<string, string> }): Promise<void> {
    const shim = createFigmaShim();
    host.shim = shim;
    if (options.token !== undefined) shim.storage.set('p2pz.token', options.token);
    if (options.endpoint !== undefined) shim.storage.set('p2pz.endpoint', options.endpoint);
    const nodes = new Map<string, SceneNode>();
    for (const layer of options.layers) {
      const png = bytes(layer.png);
      if (layer.kind === 'image') {
        const hash = shim.addImage(png);
        nodes.set(layer.name, shim.rectangle({ ...layer, fills: [{ type: 'IMAGE', scaleMode: 'FILL', imageHash: hash }] }));
      } else {
        const frame = shim.frame(layer);
        shim.setExportBytes(frame, png);
        nodes.set(layer.name, frame);
      }
    }
    shim.select(options.select.map((name) => nodes.get(name)).filter((n): n is SceneNode => n !== undefined));

    const iframe = document.createElement('iframe');
    iframe.id = 'plugin-ui';
    iframe.setAttribute('sandbox', 'allow-scripts');
    const html = await (await fetch('/ui.html')).text();
    iframe.srcdoc = html.replace('<head>', `<head>${THEME}`).replace('<html lang="en">', '<html lang="en" class="figma-light">');
    // The plugin reaches only the default port (manifest.json); the test daemon listens on another, so
    // this page, playing Figma, hands the UI that port in `init` on the way.
    const onPort = (message: unknown): unknown =>
      typeof message === 'object' && message !== null && (message as { type?: unknown }).type === 'init' ? { ...message, port: options.port } : message;
    shim.onUiMessage = (message) => iframe.contentWindow?.postMessage({ pluginMessage: onPort(message), pluginId: 'p2pz' }, '*');
    window.addEventListener('message', (event: MessageEvent) => {
      if (event.source !== iframe.contentWindow) return;
      const data = event.data as { pluginMessage?: unknown } | null;
      if (data && 'pluginMessage' in data) shim.sendToSandbox(data.pluginMessage);
    });
    const loaded = new Promise((resolve) => iframe.addEventListener('load', resolve, { once: true }));
    document.body.append(iframe);
    await loaded;

    const code = await (await fetch('/code.js')).text();
    new Function('figma', '__html__', 'fetch', code)(shim.figma, '', undefined);
    shim.run(options.command ?? 'open', options.parameters);
    const ui = shim.shownUi;
    iframe.style.width = `${ui?.width ?? 300}px`;
    iframe.style.height = `${ui?.height ?? 400}px`;
  },
  layers(): LayerSummary[] {
    const shim = host.shim;
    if (!shim) return [];
    return shim.figma.currentPage.children.map((c) => summary(c, shim));
  },
  storage(key: string): unknown {
    return host.shim?.storage.get(key);
  },
  notifications(): { text: string; error: boolean }[] {
    return host.shim?.notifications ?? [];
  },
  undo(): void {
    host.shim?.undo();
  },
};

declare global {
  interface Window {
    p2pzHost: typeof host;
  }
}
window.p2pzHost = host;
