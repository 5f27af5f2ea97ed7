// What the plugin does in the designer's Photopea document, each step one script through the channel:
// read the active layer (name, bounds, document size), export just that layer (hide the other layers,
// export the document as PNG, restore exactly the visibility it changed, then crop to the layer's
// bounds), and paste a result as a new layer moved to the original's position and named after the
// edit. Every value inside a script is spliced by `photopeaScript` (JSON-escaped).
//
// The scripts are written for Photopea's own interpreter (docs/PHOTOPEA.md; the model and the source
// of each rule: test/photopea/photopea-interpreter.ts): functions only as declarations; layers
// compared with `==` only (`!=` and `===` compare fresh wrappers); bounds are UnitValues, so every
// number comes from `.value` and all arithmetic is on numbers; no `finally`. A selection makes layer
// bounds and moves act on the selection, so reading and pasting first ask the designer to deselect.
// A placed result is a Smart Object that keeps its physical size (Photopea scales it by document DPI
// over image DPI): the paste reads the size it got and resizes it to the original layer's.
import {
  PhotopeaActiveLayer,
  PhotopeaBeforePaste,
  PhotopeaPlaced,
  PhotopeaVisibilityChanges,
  type PhotopeaBounds,
} from '../../shared/protocol/photopea.js';
import type { PhotopeaChannel, ScriptAnswer } from './channel.js';
import { joinScripts, photopeaScript } from './script.js';

export const DOCUMENT_DEFAULTS = Object.freeze({
  /** Exporting a large document takes Photopea a while. */
  exportTimeoutMs: 60_000,
  /** After `app.open`, look this often whether the pasted layer has arrived... */
  pastePollMs: 100,
  /** ...for at most this long. */
  pasteTimeoutMs: 30_000,
  /** A placed result may differ from its own size by this many pixels (Photopea's rounding of a
   *  scaled Smart Object) before the paste counts as failed. */
  sizeTolerancePx: 1,
});

/** Whether the active document has a selection. Photopea answers `selection.bounds` undefined without
 *  one (Photoshop throws): both mean none. */
const SELECTION_FUNCTION = photopeaScript`
function p2pzHasSelection(d) {
  var s;
  try { s = d.selection.bounds; } catch (e) { s = undefined; }
  if (s == undefined || s == null || s.length != 4) return false;
  return s[2].value - s[0].value > 0 && s[3].value - s[1].value > 0;
}
`;

/** How many layers a document holds, groups and their contents included. */
const COUNT_FUNCTION = photopeaScript`
function p2pzCount(ls) {
  var n = 0;
  for (var i = 0; i < ls.length; i++) {
    n++;
    if (ls[i].typename == "LayerSet") n += p2pzCount(ls[i].layers);
  }
  return n;
}
`;

const DESELECT = 'Deselect first (Select › Deselect): while a selection exists, Photopea applies layer steps to the selection.';

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
  const answer = await channel.run(
    joinScripts(
      SELECTION_FUNCTION,
      photopeaScript`
var out;
try {
  if (app.documents.length == 0) out = { ok: false, reason: "no-document" };
  else {
    var d = app.activeDocument, l = d.activeLayer;
    if (p2pzHasSelection(d)) out = { ok: false, reason: "selection" };
    else if (l == null) out = { ok: false, reason: "no-layer" };
    else {
      var b = l.bounds;
      out = { ok: true, docWidth: d.width, docHeight: d.height, name: String(l.name),
              bounds: [b[0].value, b[1].value, b[2].value, b[3].value] };
    }
  }
} catch (e) { out = { ok: false, reason: "failed" }; }
app.echoToOE(JSON.stringify(out));`,
    ),
  );
  const parsed = PhotopeaActiveLayer.safeParse(echoed(answer));
  if (!parsed.success) throw new DocumentProblem('Photopea answered in an unexpected format.');
  const info = parsed.data;
  if (!info.ok) {
    const problems = {
      'no-document': 'Open an image in Photopea.',
      'no-layer': 'Select a layer in the Layers panel.',
      selection: DESELECT,
      failed: 'Select a layer in the Layers panel.',
    } as const;
    throw new DocumentProblem(problems[info.reason]);
  }
  const rect = visibleRect(info.bounds, info.docWidth, info.docHeight);
  if (rect === null) throw new DocumentProblem(`“${info.name}” has no visible pixels on the canvas.`);
  return { name: info.name, rect };
}

/** Hides every layer except the active one (and the groups holding it, which are shown); answers
 *  what it changed. */
async function isolateActiveLayer(channel: PhotopeaChannel): Promise<PhotopeaVisibilityChanges> {
  const answer = await channel.run(photopeaScript`
var d = app.activeDocument, a = d.activeLayer, changed = [];
function holds(set, x) {
  var ls = set.layers;
  for (var i = 0; i < ls.length; i++) {
    if (ls[i] == x || (ls[i].typename == "LayerSet" && holds(ls[i], x))) return true;
  }
  return false;
}
function walk(layers, path) {
  for (var i = 0; i < layers.length; i++) {
    var l = layers[i], p = [];
    for (var k = 0; k < path.length; k++) p.push(path[k]);
    p.push(i);
    if (l == a || (l.typename == "LayerSet" && holds(l, a))) {
      if (!l.visible) { changed.push([p, false]); l.visible = true; }
      if (!(l == a)) walk(l.layers, p);
    } else if (l.visible) { changed.push([p, true]); l.visible = false; }
  }
}
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

async function beforePaste(channel: PhotopeaChannel): Promise<PhotopeaBeforePaste> {
  const answer = await channel.run(
    joinScripts(
      SELECTION_FUNCTION,
      COUNT_FUNCTION,
      photopeaScript`
var d = app.activeDocument;
app.echoToOE(JSON.stringify({ layers: p2pzCount(d.layers), selection: p2pzHasSelection(d) }));`,
    ),
  );
  const parsed = PhotopeaBeforePaste.safeParse(echoed(answer));
  if (!parsed.success) throw new DocumentProblem('Photopea answered in an unexpected format.');
  return parsed.data;
}

export interface Paste {
  /** A `data:` URL of the PNG: Photopea fetches it from its own origin, so a blob URL of ours would not do. */
  readonly url: string;
  /** Where its top-left corner goes, in document pixels. */
  readonly left: number;
  readonly top: number;
  /** The size the layer must have: the original layer's. The image is that size, or smaller when
   *  the daemon scaled a large input down to its output budget (docs/SECURITY.md §R9); the paste
   *  scales the Smart Object to it either way. */
  readonly width: number;
  readonly height: number;
  readonly name: string;
  readonly visible: boolean;
}

/**
 * Pastes an image as a new layer above the active one (`app.open(url, null, true)`), then, once
 * Photopea has loaded it (the layer count has grown), resizes it to the image's own size if Photopea
 * scaled it, moves it so that its bounds start at (left, top), names it and sets its visibility.
 * Answers the placed layer's bounds.
 */
export async function pasteLayer(channel: PhotopeaChannel, paste: Paste): Promise<PhotopeaBounds> {
  const before = await beforePaste(channel);
  if (before.selection) throw new DocumentProblem(DESELECT);
  await channel.run(photopeaScript`app.open(${paste.url}, null, true);`, DOCUMENT_DEFAULTS.exportTimeoutMs);
  const deadline = Date.now() + DOCUMENT_DEFAULTS.pasteTimeoutMs;
  for (;;) {
    const answer = await channel.run(
      joinScripts(
        COUNT_FUNCTION,
        photopeaScript`
var d = app.activeDocument;
if (p2pzCount(d.layers) <= ${before.layers}) app.echoToOE(JSON.stringify({ placed: false }));
else {
  var l = d.activeLayer, b = l.bounds;
  var w = b[2].value - b[0].value, h = b[3].value - b[1].value;
  if (w > 0 && h > 0 && (w != ${paste.width} || h != ${paste.height})) {
    l.resize(100 * ${paste.width} / w, 100 * ${paste.height} / h, AnchorPosition.TOPLEFT);
    b = l.bounds;
  }
  l.translate(${paste.left} - b[0].value, ${paste.top} - b[1].value);
  l.name = ${paste.name};
  l.visible = ${paste.visible};
  var c = l.bounds;
  app.echoToOE(JSON.stringify({ placed: true, placedSize: [w, h], bounds: [c[0].value, c[1].value, c[2].value, c[3].value] }));
}`,
      ),
    );
    const parsed = PhotopeaPlaced.safeParse(echoed(answer));
    if (!parsed.success) throw new DocumentProblem('Photopea answered in an unexpected format.');
    if (parsed.data.placed) {
      const [left, top, right, bottom] = parsed.data.bounds;
      const tolerance = DOCUMENT_DEFAULTS.sizeTolerancePx;
      if (Math.abs(right - left - paste.width) > tolerance || Math.abs(bottom - top - paste.height) > tolerance) {
        throw new DocumentProblem(`Photopea placed “${paste.name}” at ${Math.round(right - left)}×${Math.round(bottom - top)} px instead of ${paste.width}×${paste.height} px; resize the layer by hand.`);
      }
      return parsed.data.bounds;
    }
    if (Date.now() > deadline) throw new DocumentProblem('Photopea did not open the result.');
    await new Promise((resolve) => setTimeout(resolve, DOCUMENT_DEFAULTS.pastePollMs));
  }
}
