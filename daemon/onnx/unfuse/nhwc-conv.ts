// com.microsoft NhwcConv as standard ops: a Conv (same attributes) on X [N,H,W,C] with weights
// [M,kH,kW,C/group] (bias [M] optional), output [N,H',W',M]. Written as Transpose → Conv → Transpose
// (and the weights transposed back to [M,C/group,kH,kW]); the Transposes cancel against those
// onnxruntime's fusion_nhwc_conv.py put around the node and on the weights (transpose-pairs.ts).
import { convOutDims } from '../graph/static-shapes.js';
import { need, refuse, type ContribRule } from './rule.js';

export const NHWC_CONV: ContribRule = {
  shapes(node, ins) {
    const x = need(node, ins, 0);
    const w = need(node, ins, 1);
    if (x.dims.length !== 4 || w.dims.length !== 4) throw refuse(node, 'only 2-D convolutions');
    const nchw = convOutDims(node, [x.dims[0], x.dims[3], x.dims[1], x.dims[2]] as number[], [w.dims[0], w.dims[3], w.dims[1], w.dims[2]] as number[], false);
    return [{ dtype: x.dtype, dims: [nchw[0], nchw[2], nchw[3], nchw[1]] as number[] }];
  },
  expand(node, ins, { r }) {
    need(node, ins, 0);
    need(node, ins, 1);
    const x = r.transpose(node.input[0] as string, [0, 3, 1, 2]);
    const w = r.transpose(node.input[1] as string, [0, 3, 1, 2]);
    const conv = r.op('Conv', node.input[2] ? [x, w, node.input[2]] : [x, w]);
    // The Conv keeps the fused node's attributes (kernel_shape, pads, strides, dilations, group, auto_pad).
    const made = r.nodes[r.nodes.length - 1];
    if (made) made.attribute = [...node.attribute];
    r.transpose(conv, [0, 2, 3, 1], node.output[0]);
  },
};
