/// <reference path="../../node_modules/@figma/plugin-typings/plugin-api.d.ts" />
// Which selected layers p2pz can edit, and reading their pixels. A plain image layer (one visible
// image fill, no children) is read as the original image bytes (`getImageByHash().getBytesAsync()`),
// so the result replaces the image inside the same fill, crop and all; any other layer is rendered
// with `exportAsync` and its result is placed as a new image over the layer's bounds. Which of the two
// happened travels with the bytes (`read`), because placing the result depends on it.
import { PLUGIN_LIMITS, type ImageBytes, type SelectionItem } from '../../shared/protocol/plugin.js';
import { sniffImageMime } from './image-format.js';

export const SELECTION_DEFAULTS = Object.freeze({
  /** Exported layers are rendered so that their long side reaches the daemon's working size (512)... */
  minExportSide: 512,
  /** ...but never enlarged more than this. */
  maxExportScale: 4,
  /** Exports stay within Figma's image limit, so that a result fits in one image. */
  maxExportSide: PLUGIN_LIMITS.maxImageSide,
  maxBatch: PLUGIN_LIMITS.maxBatch,
});

/** The layer's single visible image fill when it is a plain image layer; null otherwise. */
export function plainImagePaint(node: SceneNode): ImagePaint | null {
  if ('children' in node && node.children.length > 0) return null;
  if (!('fills' in node) || !Array.isArray(node.fills)) return null; // figma.mixed fills on text ranges
  const visible = (node.fills as readonly Paint[]).filter((p) => p.visible !== false);
  const only = visible.length === 1 ? visible[0] : undefined;
  if (only === undefined || only.type !== 'IMAGE' || only.imageHash === null) return null;
  return only;
}

function canExport(node: SceneNode): node is SceneNode & ExportMixin {
  return 'exportAsync' in node && typeof node.exportAsync === 'function';
}

export interface SelectionDescription {
  readonly items: SelectionItem[];
  /** Why nothing can be edited, or null. */
  readonly problem: string | null;
}

/** The editable layers of a selection, or why there are none. */
export function describeSelection(nodes: readonly SceneNode[]): SelectionDescription {
  if (nodes.length === 0) return { items: [], problem: 'Select an image layer (or any layer) to edit.' };
  if (nodes.length > SELECTION_DEFAULTS.maxBatch) {
    return { items: [], problem: `Select at most ${SELECTION_DEFAULTS.maxBatch} layers at a time (${nodes.length} are selected).` };
  }
  const items: SelectionItem[] = [];
  const skipped: string[] = [];
  for (const node of nodes) {
    if (!canExport(node) || node.visible === false || !(node.width >= 1 && node.height >= 1)) {
      skipped.push(node.name);
      continue;
    }
    items.push({ nodeId: node.id, name: node.name.slice(0, 500), width: node.width, height: node.height, read: plainImagePaint(node) ? 'image-fill' : 'export' });
  }
  if (items.length === 0) {
    return { items, problem: 'The selected layers are hidden or empty. Select a visible layer with some size.' };
  }
  return { items, problem: null };
}

/** The export scale: long side up to `minExportSide`, at most `maxExportScale`, within `maxExportSide`. */
export function exportScale(width: number, height: number): number {
  const d = SELECTION_DEFAULTS;
  const long = Math.max(width, height);
  const wanted = Math.min(Math.max(d.minExportSide / long, 1), d.maxExportScale);
  return Math.min(wanted, d.maxExportSide / long);
}

/** The pixels of one layer, from its image fill or rendered with exportAsync. */
export async function readLayerImage(api: PluginAPI, node: SceneNode): Promise<ImageBytes> {
  const paint = plainImagePaint(node);
  if (paint !== null && paint.imageHash !== null) {
    const image = api.getImageByHash(paint.imageHash);
    if (image !== null) {
      const bytes = await image.getBytesAsync();
      const mime = sniffImageMime(bytes);
      if (mime !== null) return { nodeId: node.id, bytes, mime, read: 'image-fill' };
      // GIF and other formats the daemon does not read: render the layer instead.
    }
  }
  if (!canExport(node)) throw new Error('This layer cannot be exported.');
  const bytes = await node.exportAsync({
    format: 'PNG',
    constraint: { type: 'SCALE', value: exportScale(node.width, node.height) },
    useAbsoluteBounds: true,
  });
  return { nodeId: node.id, bytes, mime: 'image/png', read: 'export' };
}
