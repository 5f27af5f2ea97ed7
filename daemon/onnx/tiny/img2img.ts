// A tiny seeded image→image convolutional model: the stand-in for a distilled pix2pix-zero GAN
// generator in tests. y = tanh(x + conv2(SiLU(conv1(x)))), x ∈ [-1,1]^{1×3×H×W} (H, W dynamic).
// The residual keeps the output close to the input; Tanh keeps it in [-1,1].
import { GraphBuilder, attr } from '../graph/builder.js';

export const TINY_IMG2IMG_DEFAULTS = Object.freeze({
  seed: 0,
  /** Hidden channels of conv1. */
  channels: 16,
  /** Scale of conv2's weights relative to a unit-variance (1/√fan_in) init: small, so the model
   *  perturbs its input instead of replacing it, as a translation GAN does. */
  residualGain: 0.5,
});

/** Graph input and output names. (ONNX values are single-assignment, so the output cannot also be
 *  called `image`.) */
export const TINY_IMG2IMG_IO = Object.freeze({ input: 'image', output: 'output_image' });

export interface TinyImg2ImgOptions {
  readonly seed?: number;
  readonly channels?: number;
}

/** Writes the model to `path` (one self-contained `.onnx` file; weights inline). */
export async function writeTinyImg2Img(path: string, options: TinyImg2ImgOptions = {}): Promise<void> {
  const seed = options.seed ?? TINY_IMG2IMG_DEFAULTS.seed;
  const c = options.channels ?? TINY_IMG2IMG_DEFAULTS.channels;
  if (!Number.isInteger(c) || c < 1) throw new RangeError(`channels must be a positive integer, got ${c}`);
  const b = new GraphBuilder({ seed, graphName: 'tiny_img2img' });
  const x = b.input(TINY_IMG2IMG_IO.input, 'float32', [1, 3, 'height', 'width']);
  const conv = (name: string, input: string, cin: number, cout: number, gain: number): string =>
    b.scope(name, () => {
      // Conv weights [cout, cin, 3, 3], std = gain/√(cin·9).
      const w = b.param('weight', [cout, cin, 3, 3], { kind: 'normal', std: gain / Math.sqrt(cin * 9) });
      const bias = b.param('bias', [cout], { kind: 'normal', std: 0.02 });
      return b.op('Conv', [input, w, bias], { kernel_shape: attr.ints([3, 3]), pads: attr.ints([1, 1, 1, 1]) });
    });
  const h = conv('conv1', x, 3, c, 1);
  const act = b.op('Mul', [h, b.op('Sigmoid', [h])], {}, { name: 'SiLU' });
  const r = conv('conv2', act, c, 3, TINY_IMG2IMG_DEFAULTS.residualGain);
  const y = b.op('Tanh', [b.op('Add', [x, r])]);
  b.output(y, TINY_IMG2IMG_IO.output, 'float32', [1, 3, 'height', 'width']);
  await b.write(path, { weights: 'inline' });
}
