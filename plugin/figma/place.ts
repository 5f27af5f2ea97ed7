/// <reference path="../../node_modules/@figma/plugin-typings/plugin-api.d.ts" />
// Writes a result back into the document: a new layer directly above the original, in the same parent,
// with the same position, size and rotation, named like "cat → dog (seed 42)" and carrying its edit
// record. An image-fill result is a duplicate of the original layer with the new image in the same
// fill (same crop and scale mode); a rendered (exported) layer's result is a rectangle over the layer's
// bounds. Results beyond Figma's 4096 px image limit arrive as tiles and become a clipping frame of
// tile rectangles. The mask is left out, placed as its own hidden layer, or used as a luminance mask
// in a group with the result. One `commitUndo()` per result: one undo removes one result.
//
// Figma refuses to add anything to a component instance or to a node inside one ("Cannot move node.
// New parent is an instance or is inside of an instance"), so the result of a layer inside an instance
// goes beside the outermost instance, into the nearest ancestor outside it, at the same absolute
// transform. When placing fails half way, whatever was created is removed again.
import { PLUGIN_LIMITS, type MaskMode, type PlaceItem, type ReadMode, type TiledImage } from '../../shared/protocol/plugin.js';
import { resultName, writeLayerEdit } from './layer-edit.js';
import { IDENTITY, invert, isAxisAligned, multiply, translation, type Affine } from './transform.js';
import { plainImagePaint } from './selection.js';

export const PLACE_DEFAULTS = Object.freeze({
  maxImageSide: PLUGIN_LIMITS.maxImageSide,
  /** Prefix of the mask layer's name. */
  maskPrefix: 'Mask · ',
});

/** Where a result goes: the parent, the index above the original, and the frame of the new layer. */
interface Placement {
  readonly parent: BaseNode & ChildrenMixin;
  readonly index: number;
  readonly transform: Affine;
  readonly width: number;
  readonly height: number;
}

export interface PlacedResult {
  /** The top-level new layer (the group in masked mode). */
  readonly root: SceneNode;
  readonly image: SceneNode;
  readonly mask: SceneNode | null;
}

function hasChildren(node: BaseNode | null): node is BaseNode & ChildrenMixin {
  return node !== null && 'children' in node && 'insertChild' in node;
}

/** The coordinate system of `parent`'s children. Groups (and boolean operations) have none of their
 *  own: their children's transforms are relative to the nearest other ancestor. */
function childSpace(parent: BaseNode | null): Affine {
  let p = parent;
  while (p !== null && (p.type === 'GROUP' || p.type === 'BOOLEAN_OPERATION')) p = p.parent;
  if (p === null || p.type === 'PAGE' || p.type === 'DOCUMENT' || !('absoluteTransform' in p)) return IDENTITY;
  return (p as SceneNode & LayoutMixin).absoluteTransform as Affine;
}

/** An instance, or a node inside one: Figma refuses to give it new children. */
function isOrInInstance(node: BaseNode | null): boolean {
  for (let n: BaseNode | null | undefined = node; n; n = n.parent) if (n.type === 'INSTANCE') return true;
  return false;
}

function placement(original: SceneNode, read: ReadMode): Placement {
  // Climb out of instances: the result goes above the outermost one, in the parent that can take it.
  let beside: BaseNode = original;
  let parent = original.parent;
  while (parent !== null && isOrInInstance(parent)) {
    beside = parent;
    parent = parent.parent;
  }
  if (!hasChildren(parent)) throw new Error(`“${original.name}” has no parent to place the result in.`);
  const index = parent.children.indexOf(beside as SceneNode) + 1;
  const relative = original.relativeTransform as Affine;
  const absolute = ((original as SceneNode & LayoutMixin).absoluteTransform as Affine | undefined) ?? relative;
  const toParent = invert(childSpace(parent));
  // An exported rotated layer was rendered upright over its bounding box: place it there, upright.
  if (read === 'export' && !isAxisAligned(absolute) && original.absoluteBoundingBox !== null) {
    const box = original.absoluteBoundingBox;
    return { parent, index, transform: multiply(toParent, translation(box.x, box.y)), width: box.width, height: box.height };
  }
  // Beside the original its own transform holds; elsewhere the same absolute transform.
  const transform = beside === original ? relative : multiply(toParent, absolute);
  return { parent, index, transform, width: original.width, height: original.height };
}

function createImage(api: PluginAPI, bytes: Uint8Array): Image {
  return api.createImage(bytes);
}

/** A layer showing `image` over the placement: a duplicate of an image-fill original with the new image
 *  in its fill, a rectangle, or a frame of tiles. Not yet inserted; `created` records it at once. */
function imageLayer(api: PluginAPI, original: SceneNode, read: ReadMode, image: TiledImage, at: Placement, created: SceneNode[]): SceneNode {
  const paint = read === 'image-fill' ? plainImagePaint(original) : null;
  const [first] = image.tiles;
  if (image.tiles.length === 1 && first !== undefined) {
    const hash = createImage(api, first.bytes).hash;
    if (paint !== null && 'clone' in original) {
      const copy = original.clone() as SceneNode & GeometryMixin;
      created.push(copy);
      copy.fills = [{ ...paint, imageHash: hash }];
      return copy;
    }
    const rect = api.createRectangle();
    created.push(rect);
    rect.resize(at.width, at.height);
    rect.fills = [{ type: 'IMAGE', scaleMode: 'FILL', imageHash: hash }];
    return rect;
  }
  // Tiles: a clipping frame, each tile a rectangle at its share of the frame.
  const frame = api.createFrame();
  created.push(frame);
  frame.fills = [];
  frame.clipsContent = true;
  frame.resize(at.width, at.height);
  const sx = at.width / image.width;
  const sy = at.height / image.height;
  image.tiles.forEach((tile, i) => {
    const rect = api.createRectangle();
    rect.name = `Tile ${i + 1}`;
    frame.appendChild(rect);
    rect.resize(tile.width * sx, tile.height * sy);
    rect.relativeTransform = translation(tile.x * sx, tile.y * sy);
    rect.fills = [{ type: 'IMAGE', scaleMode: 'FILL', imageHash: createImage(api, tile.bytes).hash }];
  });
  return frame;
}

/** In an auto-layout parent the result floats over the original instead of joining the flow. */
function floats(at: Placement): boolean {
  const parent = at.parent as BaseNode & Partial<AutoLayoutMixin>;
  return parent.layoutMode !== undefined && parent.layoutMode !== 'NONE';
}

function insertAt(at: Placement, node: SceneNode, offset: number): void {
  at.parent.insertChild(at.index + offset, node);
  node.relativeTransform = at.transform;
  if ('resize' in node && (Math.abs(node.width - at.width) > 1e-6 || Math.abs(node.height - at.height) > 1e-6)) {
    (node as SceneNode & LayoutMixin).resize(at.width, at.height);
  }
  if (floats(at) && 'layoutPositioning' in node) {
    (node as SceneNode & AutoLayoutChildrenMixin).layoutPositioning = 'ABSOLUTE';
    node.relativeTransform = at.transform;
  }
}

/** Places one result above `original` and commits it as one undo step. */
export function placeResult(api: PluginAPI, original: SceneNode, item: PlaceItem, maskMode: MaskMode): PlacedResult {
  const at = placement(original, item.read);
  const name = resultName(item.edit);
  api.commitUndo(); // whatever came before is its own step
  const created: SceneNode[] = [];
  try {
    const image = imageLayer(api, original, item.read, item.image, at, created);
    image.name = name;
    let mask: SceneNode | null = null;
    let root: SceneNode = image;
    if (maskMode !== 'none' && item.mask !== null) {
      mask = imageLayer(api, original, item.read, item.mask, at, created);
      mask.name = `${PLACE_DEFAULTS.maskPrefix}${name}`;
    }
    if (mask !== null && maskMode === 'masked') {
      // The mask is the bottom layer of the group and masks the layers above it by luminance.
      insertAt(at, mask, 0);
      insertAt(at, image, 1);
      const m = mask as SceneNode & BlendMixin;
      m.isMask = true;
      m.maskType = 'LUMINANCE';
      const group = api.group([mask, image], at.parent, at.index);
      created.push(group);
      group.name = name;
      if (floats(at)) {
        // The group joined the flow; float it, and put its layers back where the original is (a
        // group's children are placed in its parent's space, and the group follows them).
        group.layoutPositioning = 'ABSOLUTE';
        mask.relativeTransform = at.transform;
        image.relativeTransform = at.transform;
      }
      root = group;
    } else {
      insertAt(at, image, 0);
      if (mask !== null) {
        // A separate layer above the result, hidden so that the result shows; designers toggle it.
        insertAt(at, mask, 1);
        mask.visible = false;
        writeLayerEdit(mask, item.edit);
      }
    }
    writeLayerEdit(root, item.edit);
    if (root !== image) writeLayerEdit(image, item.edit);
    api.commitUndo();
    return { root, image, mask };
  } catch (err) {
    // Nothing half-placed stays on the canvas.
    for (const node of created.reverse()) if (!node.removed) node.remove();
    throw err;
  }
}
