// Results larger than Figma's image limit (4096 px a side; `figma.createImage` refuses more) are cut
// into tiles of at most 4096², each re-encoded as PNG, before they go to the sandbox, which has no
// image decoder. Smaller results pass through untouched.
import { PLUGIN_LIMITS, type TiledImage } from '../../shared/protocol/plugin.js';

/** The tile grid over a width×height image: row-major rectangles of at most `side`² pixels. */
export function tileGrid(width: number, height: number, side: number = PLUGIN_LIMITS.maxImageSide): { x: number; y: number; width: number; height: number }[] {
  const out: { x: number; y: number; width: number; height: number }[] = [];
  for (let y = 0; y < height; y += side) {
    for (let x = 0; x < width; x += side) out.push({ x, y, width: Math.min(side, width - x), height: Math.min(side, height - y) });
  }
  return out;
}

/** The x, y, width × height region of a decoded image as a PNG (drawn on a canvas: the browser
 *  has the codec). `failure` is the message when the canvas cannot produce one. */
export async function regionPng(
  bitmap: ImageBitmap, region: { x: number; y: number; width: number; height: number }, failure: string,
): Promise<Uint8Array> {
  const canvas = document.createElement('canvas');
  canvas.width = region.width;
  canvas.height = region.height;
  const ctx = canvas.getContext('2d');
  if (ctx === null) throw new Error(failure);
  ctx.drawImage(bitmap, region.x, region.y, region.width, region.height, 0, 0, region.width, region.height);
  const blob = await new Promise<Blob | null>((resolve) => canvas.toBlob(resolve, 'image/png'));
  if (blob === null) throw new Error(failure);
  return new Uint8Array(await blob.arrayBuffer());
}

/** A PNG of width×height as one tile, or as tiles when a side exceeds `side`. */
export async function toTiledImage(png: Uint8Array, width: number, height: number, side: number = PLUGIN_LIMITS.maxImageSide): Promise<TiledImage> {
  if (width <= side && height <= side) return { width, height, tiles: [{ x: 0, y: 0, width, height, bytes: png }] };
  const bitmap = await createImageBitmap(new Blob([png as Uint8Array<ArrayBuffer>], { type: 'image/png' }));
  try {
    const tiles = [];
    for (const t of tileGrid(width, height, side)) {
      tiles.push({ ...t, bytes: await regionPng(bitmap, t, 'The result could not be cut into tiles.') });
    }
    return { width, height, tiles };
  } finally {
    bitmap.close();
  }
}
