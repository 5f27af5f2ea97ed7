// What the Photopea plugin page (plugin/photopea) reads back from Photopea: the strings its scripts
// send with `app.echoToOE(JSON.stringify(...))`. Photopea runs inside the designer's browser, but its
// answers still cross a boundary into our page, so each one is parsed here before use.
import { z } from 'zod';

export const PHOTOPEA_LIMITS = Object.freeze({
  /** Layers whose visibility one export may change (the rest of the document is left alone). */
  maxLayers: 10_000,
  /** Nesting depth of layer groups. */
  maxDepth: 64,
  /** Layer names as Photopea reports them. */
  maxNameChars: 1_000,
});

const Coordinate = z.number().finite().min(-1_000_000).max(1_000_000);

/** [left, top, right, bottom] in document pixels, as `layer.bounds` gives them. */
export const PhotopeaBounds = z.tuple([Coordinate, Coordinate, Coordinate, Coordinate]);
export type PhotopeaBounds = z.infer<typeof PhotopeaBounds>;

/** The active layer of the active document, or why there is none. */
export const PhotopeaActiveLayer = z.discriminatedUnion('ok', [
  z.object({
    ok: z.literal(true),
    docWidth: z.number().int().positive().max(1_000_000),
    docHeight: z.number().int().positive().max(1_000_000),
    name: z.string().max(PHOTOPEA_LIMITS.maxNameChars),
    bounds: PhotopeaBounds,
  }),
  z.object({ ok: z.literal(false), reason: z.enum(['no-document', 'no-layer', 'selection', 'failed']) }),
]);
export type PhotopeaActiveLayer = z.infer<typeof PhotopeaActiveLayer>;

/** Layers whose visibility an export changed: the index path from the document's top level, and the
 *  visibility to restore. */
export const PhotopeaVisibilityChanges = z
  .array(z.tuple([z.array(z.number().int().nonnegative().max(PHOTOPEA_LIMITS.maxLayers)).min(1).max(PHOTOPEA_LIMITS.maxDepth), z.boolean()]))
  .max(PHOTOPEA_LIMITS.maxLayers);
export type PhotopeaVisibilityChanges = z.infer<typeof PhotopeaVisibilityChanges>;

/** Before a paste: how many layers the document holds (a paste adds one), and whether a selection
 *  exists (layer calls would then act on the selection). */
export const PhotopeaBeforePaste = z.object({
  layers: z.number().int().nonnegative().max(PHOTOPEA_LIMITS.maxLayers),
  selection: z.boolean(),
});
export type PhotopeaBeforePaste = z.infer<typeof PhotopeaBeforePaste>;

/** After a paste: not there yet (Photopea still loading the image), or placed: the size Photopea gave
 *  it (a Smart Object keeps its physical size, so its pixels may be scaled) and its final bounds. */
export const PhotopeaPlaced = z.discriminatedUnion('placed', [
  z.object({ placed: z.literal(false) }),
  z.object({ placed: z.literal(true), placedSize: z.tuple([Coordinate, Coordinate]), bounds: PhotopeaBounds }),
]);
export type PhotopeaPlaced = z.infer<typeof PhotopeaPlaced>;
