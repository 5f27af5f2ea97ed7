// Cheap step previews: the predicted clean latent x̂0 [1,4,h,w] mapped to RGB by a fixed linear
// projection instead of the VAE decoder, rgb[c] = Σ_k x̂0[k]·P[k][c] (then [-1,1] → 8 bits), one
// pixel per latent cell. P is the widely used least-squares fit of SD 1.x's decoded colours to its
// (scaled) latents; it shows layout and colour, not detail, at a negligible cost per step.
import { P2pzError } from '../../shared/protocol/index.js';

/** P[k][c]: latent channel k → R, G, B (Stable Diffusion 1.x). */
export const SD1_LATENT_RGB: readonly (readonly [number, number, number])[] = Object.freeze([
  [0.3512, 0.2297, 0.3227],
  [0.325, 0.4974, 0.235],
  [-0.2829, 0.1762, 0.2721],
  [-0.212, -0.2616, -0.7177],
]);

/** x̂0 [1,4,h,w] → HWC 8-bit RGB h×w. */
export function latentPreviewRgb(x0: Float32Array, h: number, w: number): Uint8Array {
  const plane = h * w;
  if (x0.length !== 4 * plane) throw new P2pzError('E_INTERNAL', 'latent preview: the latent is not [1,4,h,w].');
  const rgb = new Uint8Array(3 * plane);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      let v = 0;
      for (let k = 0; k < 4; k++) v += x0[k * plane + p]! * SD1_LATENT_RGB[k]![c]!;
      const b = (v + 1) * 127.5;
      rgb[3 * p + c] = b > 0 ? (b < 255 ? Math.round(b) : 255) : 0;
    }
  }
  return rgb;
}
