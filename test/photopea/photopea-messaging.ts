// Photopea's live messaging as a plugin sees it (https://www.photopea.com/api/live): a string posted
// to Photopea is run as a script; what it sends with `echoToOE` (strings) and `saveToOE` (an
// ArrayBuffer) comes back in order, then the string "done". A script that throws gets no "done" at
// all (photopea/photopea#5674; p2pz issue 17, from a published pp.js). `app.open(url, null, true)`
// only starts loading: the image is placed after "done" (see photopea-document.ts). Pure: the browser emulation and the Node tests share it.
import { type PhotopeaDocumentModel } from './photopea-document.js';
import { interpretPhotopeaScript, type ScriptOutcome } from './photopea-interpreter.js';

export interface ScriptAnswer {
  /** What goes back to the plugin, in order ("done" last, unless the script failed). */
  readonly messages: ReadonlyArray<string | Promise<ArrayBuffer>>;
  readonly outcome: ScriptOutcome;
  /** URLs the script asked `app.open` to place, in order. */
  readonly opens: readonly string[];
}

/** Runs one posted script against the model. `exportPng` renders the visible layers for `saveToOE`. */
export function answerScript<Image>(model: PhotopeaDocumentModel<Image>, source: string, exportPng: () => Promise<ArrayBuffer>): ScriptAnswer {
  const messages: Array<string | Promise<ArrayBuffer>> = [];
  const opens: string[] = [];
  const outcome = interpretPhotopeaScript(
    source,
    model.app({
      echo: (text) => messages.push(text),
      save: () => messages.push(exportPng()),
      open: (url) => opens.push(url),
    }),
  );
  if (outcome.error === null) messages.push('done');
  return { messages, outcome, opens };
}

/** Width, height and DPI (from pHYs in pixels per metre; null when absent) of PNG bytes. */
export function pngInfo(png: Uint8Array): { width: number; height: number; dpi: number | null } {
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const width = view.getUint32(16);
  const height = view.getUint32(20);
  let dpi: number | null = null;
  for (let at = 8; at + 8 <= png.length; ) {
    const length = view.getUint32(at);
    const type = String.fromCharCode(png[at + 4] ?? 0, png[at + 5] ?? 0, png[at + 6] ?? 0, png[at + 7] ?? 0);
    if (type === 'pHYs' && png[at + 16] === 1) dpi = view.getUint32(at + 8) * 0.0254;
    if (type === 'IDAT') break;
    at += 12 + length;
  }
  return { width, height, dpi };
}

/** The bytes of a `data:…;base64,` URL. */
export function dataUrlBytes(url: string): Uint8Array {
  const s = atob(url.slice(url.indexOf(',') + 1));
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
