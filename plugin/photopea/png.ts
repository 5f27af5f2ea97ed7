// PNG handling in the page: cropping Photopea's whole-document export to the layer's rectangle (on a
// canvas, since Photopea exports only whole documents), and `data:` URLs for pasting results back.
import { regionPng } from '../ui/tiles.js';
import type { Rect } from './document.js';

/** The rect of a PNG, as a PNG (the bytes themselves when the rect is the whole image). */
export async function cropPng(png: Uint8Array, rect: Rect): Promise<Uint8Array> {
  const bitmap = await createImageBitmap(new Blob([png as Uint8Array<ArrayBuffer>], { type: 'image/png' }));
  try {
    if (rect.left === 0 && rect.top === 0 && rect.width === bitmap.width && rect.height === bitmap.height) return png;
    return await regionPng(bitmap, { x: rect.left, y: rect.top, width: rect.width, height: rect.height }, 'The layer could not be cut out.');
  } finally {
    bitmap.close();
  }
}

/** Width and height from a PNG's IHDR chunk (bytes 16–23, big-endian). */
export function pngSize(png: Uint8Array): { width: number; height: number } {
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  if (png.length < 24) throw new Error('The result is not a PNG.');
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

/** `data:image/png;base64,...` of the bytes. */
export function dataUrl(png: Uint8Array): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => (typeof reader.result === 'string' ? resolve(reader.result) : reject(new Error('The result could not be read.')));
    reader.onerror = () => reject(new Error('The result could not be read.'));
    reader.readAsDataURL(new Blob([png as Uint8Array<ArrayBuffer>], { type: 'image/png' }));
  });
}
