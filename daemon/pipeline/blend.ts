// Compositing the edit into the original through the attention mask (docs/DESIGN.md §3 step 7):
//   out = orig + round((edit − orig)·m/255)   per 8-bit channel, m the mask at the same pixel,
// so m = 0 keeps the original bytes exactly and m = 255 takes the edit exactly.
import { P2pzError } from '../../shared/protocol/index.js';

export function blendThroughMask(original: Uint8Array, edit: Uint8Array, mask: Uint8Array, width: number, height: number): Uint8Array {
  const n = width * height;
  if (original.length !== 3 * n || edit.length !== 3 * n || mask.length !== n) {
    throw new P2pzError('E_INTERNAL', 'blend: the original, the edit and the mask differ in size.');
  }
  const out = new Uint8Array(3 * n);
  for (let p = 0; p < n; p++) {
    const m = mask[p]!;
    for (let c = 0; c < 3; c++) {
      const i = 3 * p + c;
      const o = original[i]!;
      out[i] = m === 0 ? o : o + Math.round(((edit[i]! - o) * m) / 255);
    }
  }
  return out;
}
