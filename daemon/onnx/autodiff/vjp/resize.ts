// Vector-Jacobian product of nearest-neighbour Resize/Upsample by integer factors (the UNet's ×2
// upsampling). When output index o along an axis reads input index ⌊o/s⌋, Y viewed as
// [..., in, s, ...] is X repeated s times, so dX = Σ over the s axes of dY viewed that way.
// Any other coordinate mapping (linear/cubic modes, align_corners) is rejected.
import { attrString } from '../../graph/nodes.js';
import { gradOut, input, unsupported, type VjpRule } from './types.js';

/** Source index of output index `o` for nearest resize, per ONNX's coordinate/nearest modes. */
function nearestSource(o: number, scale: number, inLen: number, outLen: number, coord: string, nearest: string): number {
  let x: number;
  switch (coord) {
    case 'asymmetric': x = o / scale; break;
    case 'half_pixel': x = (o + 0.5) / scale - 0.5; break;
    case 'pytorch_half_pixel': x = outLen > 1 ? (o + 0.5) / scale - 0.5 : 0; break;
    case 'tf_half_pixel_for_nn': x = (o + 0.5) / scale; break;
    case 'align_corners': x = outLen > 1 ? (o * (inLen - 1)) / (outLen - 1) : 0; break;
    default: return -1;
  }
  let i: number;
  switch (nearest) {
    case 'floor': i = Math.floor(x); break;
    case 'ceil': i = Math.ceil(x); break;
    case 'round_prefer_ceil': i = Math.round(x); break;
    default: i = x - Math.floor(x) === 0.5 ? Math.floor(x) : Math.round(x); // round_prefer_floor
  }
  return Math.min(Math.max(i, 0), inLen - 1);
}

const resize: VjpRule = (a) => {
  if (!a.needs[0]) return [undefined];
  const { em, node } = a;
  const X = input(a, 0);
  const xd = em.dims(X);
  const dY = gradOut(a);
  const yd = em.dims(dY);
  if (attrString(node, 'mode', 'nearest') !== 'nearest') throw unsupported(node, 'only nearest-neighbour resizing is differentiable here');
  const coord = node.opType === 'Upsample' ? 'asymmetric' : attrString(node, 'coordinate_transformation_mode', 'half_pixel');
  const nearest = node.opType === 'Upsample' ? 'floor' : attrString(node, 'nearest_mode', 'round_prefer_floor');
  const view: number[] = [];
  const sumAxes: number[] = [];
  xd.forEach((d, i) => {
    const out = yd[i] ?? d;
    const s = out / d;
    if (!Number.isInteger(s) || s < 1) throw unsupported(node, 'non-integer scale factor');
    for (let o = 0; o < out; o++) {
      if (nearestSource(o, s, d, out, coord, nearest) !== Math.floor(o / s)) throw unsupported(node, `coordinate mode ${coord}/${nearest}`);
    }
    view.push(d);
    if (s > 1) { view.push(s); sumAxes.push(view.length - 1); }
  });
  return [em.reshape(em.reduceSum(em.reshape(dY, view), sumAxes, false), xd)];
};

export const RESIZE_VJPS: Readonly<Record<string, VjpRule>> = { Resize: resize, Upsample: resize };
