// The browser side of the Photopea emulation (bundled by host-page.ts): it plays Photopea's part
// around the plugin page, as Photopea's live messaging does. The page runs in an iframe; every string
// it posts is run as a script by the model of Photopea's interpreter (photopea-interpreter.ts: acorn,
// no function expressions, no finally, `==` on layers, UnitValue bounds, no "done" after a throw)
// against the model of its document (photopea-document.ts: fresh layer wrappers, selections, Smart
// Object placement scaled by DPI); what the script sends comes back in order, then "done"
// (photopea-messaging.ts). Each file's header says where each behaviour was learned. Here only the
// pixels are added: `saveToOE("png")` composites the visible layers on a canvas, and `app.open` decodes
// the image (after "done", as a real fetch would) and places it. Tests drive it through
// `window.photopea`.
import { artLayer, layerRect, PhotopeaDocumentModel, type ModelLayer, type Rect } from './photopea-document.js';
import { answerScript, dataUrlBytes, pngInfo } from './photopea-messaging.js';

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
  /** The layer's size in the document. */
  readonly width: number;
  readonly height: number;
  /** The size of the pixels it holds (a Smart Object may show them scaled). */
  readonly imageWidth: number;
  readonly imageHeight: number;
  readonly smart: boolean;
}

export interface EmulatorRecord {
  /** Every script the page sent. */
  readonly scripts: string[];
  /** The visible layers' names at each saveToOE. */
  readonly exports: string[][];
  /** The URL of each `app.open` paste (its scheme, to keep the record small). */
  readonly pastes: string[];
  /** Scripts that threw (they got no "done"), with the reason. */
  readonly errors: string[];
  /** What scripts did that would damage a real document (see photopea-document.ts). */
  readonly misuses: string[];
}

let model = new PhotopeaDocumentModel<ImageBitmap>(0, 0);
const state = {
  iframe: null as HTMLIFrameElement | null,
  pluginOrigin: '',
  record: { scripts: [], exports: [], pastes: [], errors: [], misuses: [] } as EmulatorRecord,
};

function send(data: string | ArrayBuffer): void {
  state.iframe?.contentWindow?.postMessage(data, state.pluginOrigin);
}

async function composite(): Promise<ArrayBuffer> {
  const canvas = document.createElement('canvas');
  canvas.width = model.width;
  canvas.height = model.height;
  const ctx = canvas.getContext('2d');
  if (ctx === null) throw new Error('no 2d context');
  const draw = (layers: ModelLayer<ImageBitmap>[]): void => {
    for (const layer of [...layers].reverse()) {
      if (!layer.visible) continue;
      if (layer.layers) draw(layer.layers);
      else if (layer.image) ctx.drawImage(layer.image, layer.left, layer.top, layer.width, layer.height);
    }
  };
  draw(model.layers);
  const blob = await new Promise<Blob | null>((resolve) => canvas.toBlob(resolve, 'image/png'));
  if (blob === null) throw new Error('toBlob failed');
  return blob.arrayBuffer();
}

async function place(url: string): Promise<void> {
  const bytes = dataUrlBytes(url);
  const info = pngInfo(bytes);
  const bitmap = await createImageBitmap(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'image/png' }));
  model.place(bitmap, info.width, info.height, info.dpi);
}

/** Runs one script as Photopea would: what it sends goes out in order, then "done" (not after a throw). */
async function runScript(source: string): Promise<void> {
  state.record.scripts.push(source);
  const answer = answerScript(model, source, () => {
    state.record.exports.push(model.all().filter((l) => l.visible && l.layers === undefined).map((l) => l.name));
    return composite();
  });
  if (answer.outcome.error !== null) state.record.errors.push(answer.outcome.error);
  for (const url of answer.opens) {
    state.record.pastes.push(url.slice(0, url.indexOf(',') + 1));
    void place(url);
  }
  for (const message of answer.messages) send(await message);
}

function summary(l: ModelLayer<ImageBitmap>): LayerSummary {
  const r = layerRect(l) ?? { left: 0, top: 0, right: 0, bottom: 0 };
  return {
    name: l.name,
    visible: l.visible,
    bounds: [r.left, r.top, r.right, r.bottom],
    width: r.right - r.left,
    height: r.bottom - r.top,
    imageWidth: l.image?.width ?? 0,
    imageHeight: l.image?.height ?? 0,
    smart: l.smart,
  };
}

const photopea = {
  async start(options: { pluginUrl: string; width: number; height: number; resolution?: number; layers: EmulatedLayerInput[]; active: string }): Promise<void> {
    model = new PhotopeaDocumentModel<ImageBitmap>(options.width, options.height, options.resolution ?? 72);
    for (const l of options.layers) {
      const bitmap = await createImageBitmap(new Blob([dataUrlBytes(`,${l.png}`) as Uint8Array<ArrayBuffer>], { type: 'image/png' }));
      model.layers.push(artLayer(l.name, l.left, l.top, bitmap.width, bitmap.height, bitmap, l.visible));
    }
    model.active = model.layers.find((l) => l.name === options.active) ?? null;
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
  /** Makes (or, with null, removes) a rectangular selection, as the designer would with the marquee. */
  select(rect: Rect | null): void {
    model.selection = rect;
  },
  layers(): LayerSummary[] {
    return model.layers.map(summary);
  },
  activeName(): string | null {
    return model.active?.name ?? null;
  },
  record(): EmulatorRecord {
    return { ...state.record, misuses: [...model.misuses] };
  },
};

declare global {
  interface Window {
    photopea: typeof photopea;
    pwned?: unknown;
  }
}
window.photopea = photopea;
