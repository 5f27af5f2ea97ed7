// PNG handling in the page: cropping Photopea's whole-document export to the layer's rectangle (on a
// canvas, since Photopea exports only whole documents), and `data:` URLs for pasting results back.
import type { Rect } from './document.js';

/** The rect of a PNG, as a PNG (the bytes themselves when the rect is the whole image). */
export async function cropPng(png: Uint8Array, rect: Rect): Promise<Uint8Array> {
  const bitmap = await createImageBitmap(new Blob([png as Uint8Array<ArrayBuffer>], { type: 'image/png' }));
  try {
    if (rect.left === 0 && rect.top === 0 && rect.width === bitmap.width && rect.height === bitmap.height) return png;
    const canvas = document.createElement('canvas');
    canvas.width = rect.width;
    canvas.height = rect.height;
    const ctx = canvas.getContext('2d');
    if (ctx === null) throw new Error('The layer could not be cut out.');
    ctx.drawImage(bitmap, rect.left, rect.top, rect.width, rect.height, 0, 0, rect.width, rect.height);
    const blob = await new Promise<Blob | null>((resolve) => canvas.toBlob(resolve, 'image/png'));
    if (blob === null) throw new Error('The layer could not be cut out.');
    return new Uint8Array(await blob.arrayBuffer());
  } finally {
    bitmap.close();
  }
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
