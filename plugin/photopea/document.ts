// What the plugin does in the designer's Photopea document, each step one script through the channel:
// read the active layer (name, bounds, document size), export just that layer (hide the other layers,
// export the document as PNG, restore exactly the visibility it changed, then crop to the layer's
// bounds), and paste a result as a new layer moved to the original's position and named after the
// edit. Every value inside a script is spliced by `photopeaScript` (JSON-escaped).
import {
  PhotopeaActiveLayer,
  PhotopeaPlaced,
  PhotopeaVisibilityChanges,
  type PhotopeaBounds,
} from '../../shared/protocol/photopea.js';
import type { PhotopeaChannel, ScriptAnswer } from './channel.js';
import { photopeaScript } from './script.js';

export const DOCUMENT_DEFAULTS = Object.freeze({
  /** Exporting a large document takes Photopea a while. */
  exportTimeoutMs: 60_000,
  /** After `app.open`, look this often whether the pasted layer has arrived... */
  pastePollMs: 100,
  /** ...for at most this long. */
  pasteTimeoutMs: 30_000,
});

/** A rectangle in document pixels. */
export interface Rect {
  readonly left: number;
  readonly top: number;
  readonly width: number;
  readonly height: number;
}

export interface ActiveLayer {
  readonly name: string;
  /** The layer's bounds clipped to the canvas (what an export can see), whole pixels. */
  readonly rect: Rect;
}

/** The last string a script echoed, parsed as JSON (null when there was none or it is not JSON). */
function echoed(answer: ScriptAnswer): unknown {
  const last = answer.strings[answer.strings.length - 1];
  if (last === undefined) return null;
  try {
    return JSON.parse(last) as unknown;
  } catch {
    return null;
  }
}

/** Bounds clipped to a docWidth×docHeight canvas, rounded outwards to whole pixels. */
export function visibleRect(bounds: PhotopeaBounds, docWidth: number, docHeight: number): Rect | null {
  const left = Math.max(0, Math.floor(bounds[0]));
  const top = Math.max(0, Math.floor(bounds[1]));
  const right = Math.min(docWidth, Math.ceil(bounds[2]));
  const bottom = Math.min(docHeight, Math.ceil(bounds[3]));
  if (right <= left || bottom <= top) return null;
  return { left, top, width: right - left, height: bottom - top };
}

/** A problem in the document the designer can fix (shown as the selection's text). */
export class DocumentProblem extends Error {}

export async function readActiveLayer(channel: PhotopeaChannel): Promise<ActiveLayer> {
  const answer = await channel.run(photopeaScript`
var out;
try {
  if (app.documents.length == 0) out = { ok: false, reason: "no-document" };
  else {
    var d = app.activeDocument, l = d.activeLayer, b = l.bounds;
    out = { ok: true, docWidth: Number(d.width), docHeight: Number(d.height), name: String(l.name),
            bounds: [Number(b[0]), Number(b[1]), Number(b[2]), Number(b[3])] };
  }
} catch (e) { out = { ok: false, reason: "failed" }; }
app.echoToOE(JSON.stringify(out));`);
  const parsed = PhotopeaActiveLayer.safeParse(echoed(answer));
  if (!parsed.success) throw new DocumentProblem('Photopea answered in an unexpected format.');
  const info = parsed.data;
  if (!info.ok) throw new DocumentProblem(info.reason === 'no-document' ? 'Open an image in Photopea.' : 'Select a layer in the Layers panel.');
  const rect = visibleRect(info.bounds, info.docWidth, info.docHeight);
  if (rect === null) throw new DocumentProblem(`“${info.name}” has no visible pixels on the canvas.`);
  return { name: info.name, rect };
}

/** Hides every layer except the active one (and the groups holding it, which are shown); answers
 *  what it changed. */
async function isolateActiveLayer(channel: PhotopeaChannel): Promise<PhotopeaVisibilityChanges> {
  const answer = await channel.run(photopeaScript`
var d = app.activeDocument, a = d.activeLayer, changed = [];
var holds = function (set, x) {
  for (var i = 0; i < set.layers.length; i++) {
    var c = set.layers[i];
    if (c == x || (c.typename == "LayerSet" && holds(c, x))) return true;
  }
  return false;
};
var walk = function (layers, path) {
  for (var i = 0; i < layers.length; i++) {
    var l = layers[i], p = path.concat([i]);
    if (l == a || (l.typename == "LayerSet" && holds(l, a))) {
      if (!l.visible) { changed.push([p, false]); l.visible = true; }
      if (l != a) walk(l.layers, p);
    } else if (l.visible) { changed.push([p, true]); l.visible = false; }
  }
};
walk(d.layers, []);
app.echoToOE(JSON.stringify(changed));`);
  const parsed = PhotopeaVisibilityChanges.safeParse(echoed(answer));
  if (!parsed.success) throw new DocumentProblem('Photopea answered in an unexpected format.');
  return parsed.data;
}

async function restoreVisibility(channel: PhotopeaChannel, changes: PhotopeaVisibilityChanges): Promise<void> {
  if (changes.length === 0) return;
  await channel.run(photopeaScript`
var changes = ${changes};
for (var i = 0; i < changes.length; i++) {
  var path = changes[i][0], layers = app.activeDocument.layers, l = null;
  for (var k = 0; k < path.length && layers; k++) { l = layers[path[k]]; layers = l && l.layers; }
  if (l) l.visible = changes[i][1];
}`);
}

/** The document as PNG bytes, with only the active layer visible; the visibility is restored after. */
export async function exportActiveLayer(channel: PhotopeaChannel): Promise<ArrayBuffer> {
  const changes = await isolateActiveLayer(channel);
  try {
    const answer = await channel.run(photopeaScript`app.activeDocument.saveToOE(${'png'});`, DOCUMENT_DEFAULTS.exportTimeoutMs);
    const png = answer.buffers[0];
    if (png === undefined) throw new DocumentProblem('Photopea did not export the document.');
    return png;
  } finally {
    await restoreVisibility(channel, changes);
  }
}

async function layerCount(channel: PhotopeaChannel): Promise<number> {
  const answer = await channel.run(photopeaScript`
var count = function (ls) { var n = 0; for (var i = 0; i < ls.length; i++) { n++; if (ls[i].typename == "LayerSet") n += count(ls[i].layers); } return n; };
app.echoToOE(String(count(app.activeDocument.layers)));`);
  const n = Number(answer.strings[answer.strings.length - 1]);
  if (!Number.isInteger(n) || n < 0) throw new DocumentProblem('Photopea answered in an unexpected format.');
  return n;
}

export interface Paste {
  /** A `data:` URL of the PNG: Photopea fetches it from its own origin, so a blob URL of ours would not do. */
  readonly url: string;
  /** Where its top-left corner goes, in document pixels. */
  readonly left: number;
  readonly top: number;
  readonly name: string;
  readonly visible: boolean;
}

/**
 * Pastes an image as a new layer above the active one (`app.open(url, null, true)`), then, once
 * Photopea has loaded it (the layer count has grown), moves it so that its bounds start at
 * (left, top), names it and sets its visibility. Answers the placed layer's bounds.
 */
export async function pasteLayer(channel: PhotopeaChannel, paste: Paste): Promise<PhotopeaBounds> {
  const before = await layerCount(channel);
  await channel.run(photopeaScript`app.open(${paste.url}, null, true);`, DOCUMENT_DEFAULTS.exportTimeoutMs);
  const deadline = Date.now() + DOCUMENT_DEFAULTS.pasteTimeoutMs;
  for (;;) {
    const answer = await channel.run(photopeaScript`
var count = function (ls) { var n = 0; for (var i = 0; i < ls.length; i++) { n++; if (ls[i].typename == "LayerSet") n += count(ls[i].layers); } return n; };
var d = app.activeDocument;
if (count(d.layers) <= ${before}) app.echoToOE(JSON.stringify({ placed: false }));
else {
  var l = d.activeLayer, b = l.bounds;
  l.translate(${paste.left} - Number(b[0]), ${paste.top} - Number(b[1]));
  l.name = ${paste.name};
  l.visible = ${paste.visible};
  var c = l.bounds;
  app.echoToOE(JSON.stringify({ placed: true, bounds: [Number(c[0]), Number(c[1]), Number(c[2]), Number(c[3])] }));
}`);
    const parsed = PhotopeaPlaced.safeParse(echoed(answer));
    if (!parsed.success) throw new DocumentProblem('Photopea answered in an unexpected format.');
    if (parsed.data.placed) return parsed.data.bounds;
    if (Date.now() > deadline) throw new DocumentProblem('Photopea did not open the result.');
    await new Promise((resolve) => setTimeout(resolve, DOCUMENT_DEFAULTS.pastePollMs));
  }
}
