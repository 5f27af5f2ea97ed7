// Image fixtures for the sandbox tests: real PNGs made with sharp, and a GIF header (Figma keeps GIF
// fills as GIF; the daemon does not read them).
import sharp from 'sharp';

export async function png(width: number, height: number, rgb: [number, number, number] = [200, 120, 40]): Promise<Uint8Array> {
  const buffer = await sharp({ create: { width, height, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } }).png().toBuffer();
  return new Uint8Array(buffer);
}

/** The first bytes of a GIF89a of width×height (enough for a header sniff). */
export function gifHeader(width: number, height: number): Uint8Array {
  const bytes = new Uint8Array(13);
  bytes.set([0x47, 0x49, 0x46, 0x38, 0x39, 0x61]);
  new DataView(bytes.buffer).setUint16(6, width, true);
  new DataView(bytes.buffer).setUint16(8, height, true);
  return bytes;
}
