// The browser side of the Photopea emulation (bundled by host-page.ts): it plays Photopea's part
// around the plugin page, as Photopea's live messaging does. The page runs in an iframe; every string
// it posts is run as a script against a small model of Photopea's scripting DOM (`app.documents`,
// `app.activeDocument` with `layers`, `activeLayer`, `width`, `height`, `saveToOE`; layers with
// `name`, `visible`, `bounds`, `typename`, `layers`, `translate`; `app.echoToOE`, `app.open(url, null,
// true)`); what the script sends comes back in order, then "done". `saveToOE("png")` composites the
// visible layers on a canvas; `app.open` loads the image asynchronously (after "done", as a real
// fetch would) and pastes it, centred, above the active layer. Tests drive it through `window.photopea`.

export interface EmulatedLayerInput {
  readonly name: string;
  readonly left: number;
  readonly top: number;
  readonly visible: boolean;
  /** PNG as base64. */
  readonly png: string;
}

export interface LayerSummary {
  readonly name: string;
  readonly visible: boolean;
  readonly bounds: [number, number, number, number];
  readonly width: number;
  readonly height: number;
}

class Layer {
  readonly typename = 'ArtLayer';
  readonly layers = undefined;
  constructor(
    public name: string,
    public left: number,
    public top: number,
    public visible: boolean,
    readonly bitmap: ImageBitmap,
  ) {}
  get bounds(): [number, number, number, number] {
    return [this.left, this.top, this.left + this.bitmap.width, this.top + this.bitmap.height];
  }
  translate(dx: number, dy: number): void {
    this.left += Number(dx);
    this.top += Number(dy);
  }
}

function bytes(base64: string): Uint8Array<ArrayBuffer> {
  const s = atob(base64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

const state = {
  iframe: null as HTMLIFrameElement | null,
  pluginOrigin: '',
  /** Top of the stack first, as Photopea's `layers`. */
  layers: [] as Layer[],
  active: null as Layer | null,
  width: 0,
  height: 0,
  /** Every script the page sent. */
  scripts: [] as string[],
  /** The visible layers' names at each saveToOE. */
  exports: [] as string[][],
  /** The URL of each `app.open` paste (its scheme, to keep the record small). */
  pastes: [] as string[],
  /** Scripts that threw. */
  errors: [] as string[],
};

function send(data: string | ArrayBuffer): void {
  state.iframe?.contentWindow?.postMessage(data, state.pluginOrigin);
}

async function composite(): Promise<ArrayBuffer> {
  const canvas = document.createElement('canvas');
  canvas.width = state.width;
  canvas.height = state.height;
  const ctx = canvas.getContext('2d');
  if (ctx === null) throw new Error('no 2d context');
  for (const layer of [...state.layers].reverse()) if (layer.visible) ctx.drawImage(layer.bitmap, layer.left, layer.top);
  const blob = await new Promise<Blob | null>((resolve) => canvas.toBlob(resolve, 'image/png'));
  if (blob === null) throw new Error('toBlob failed');
  return blob.arrayBuffer();
}

async function paste(url: string): Promise<void> {
  const bitmap = await createImageBitmap(await (await fetch(url)).blob());
  const layer = new Layer('Layer from file', Math.floor((state.width - bitmap.width) / 2), Math.floor((state.height - bitmap.height) / 2), true, bitmap);
  const at = state.active === null ? 0 : Math.max(0, state.layers.indexOf(state.active));
  state.layers.splice(at, 0, layer);
  state.active = layer;
}

/** Runs one script as Photopea would: what it sends goes out in order, then "done". */
async function runScript(source: string): Promise<void> {
  state.scripts.push(source);
  const outbox: Array<Promise<string | ArrayBuffer>> = [];
  const doc = {
    get width() {
      return state.width;
    },
    get height() {
      return state.height;
    },
    get layers() {
      return state.layers;
    },
    get activeLayer() {
      return state.active;
    },
    saveToOE(format: string) {
      if (format !== 'png') throw new Error(`unsupported format ${format}`);
      state.exports.push(state.layers.filter((l) => l.visible).map((l) => l.name));
      outbox.push(composite());
    },
  };
  const app = {
    documents: { get length() { return state.layers.length > 0 ? 1 : 0; } },
    activeDocument: doc,
    echoToOE(text: unknown) {
      outbox.push(Promise.resolve(String(text)));
    },
    open(url: string, _as: unknown, asLayer: boolean) {
      if (asLayer !== true) throw new Error('only pastes as a layer are emulated');
      state.pastes.push(url.slice(0, url.indexOf(',') + 1));
      void paste(url);
    },
  };
  try {
    new Function('app', source)(app);
  } catch (err) {
    state.errors.push(String(err));
  }
  for (const item of outbox) send(await item);
  send('done');
}

const photopea = {
  async start(options: { pluginUrl: string; width: number; height: number; layers: EmulatedLayerInput[]; active: string }): Promise<void> {
    state.width = options.width;
    state.height = options.height;
    state.layers = [];
    for (const l of options.layers) {
      const bitmap = await createImageBitmap(new Blob([bytes(l.png)], { type: 'image/png' }));
      state.layers.push(new Layer(l.name, l.left, l.top, l.visible, bitmap));
    }
    state.active = state.layers.find((l) => l.name === options.active) ?? null;
    state.pluginOrigin = new URL(options.pluginUrl).origin;
    const iframe = document.createElement('iframe');
    iframe.id = 'plugin';
    iframe.src = options.pluginUrl;
    state.iframe = iframe;
    window.addEventListener('message', (event: MessageEvent) => {
      if (event.source !== iframe.contentWindow || event.origin !== state.pluginOrigin) return;
      if (typeof event.data === 'string') void runScript(event.data);
    });
    const loaded = new Promise((resolve) => iframe.addEventListener('load', resolve, { once: true }));
    document.body.append(iframe);
    await loaded;
  },
  layers(): LayerSummary[] {
    return state.layers.map((l) => ({ name: l.name, visible: l.visible, bounds: l.bounds, width: l.bitmap.width, height: l.bitmap.height }));
  },
  activeName(): string | null {
    return state.active?.name ?? null;
  },
  record(): { scripts: string[]; exports: string[][]; pastes: string[]; errors: string[] } {
    return { scripts: state.scripts, exports: state.exports, pastes: state.pastes, errors: state.errors };
  },
};

declare global {
  interface Window {
    photopea: typeof photopea;
    pwned?: unknown;
  }
}
window.photopea = photopea;
