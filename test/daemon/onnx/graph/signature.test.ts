// declaredSignature reads a model's inputs and outputs from its graph file as a session would list
// them, without onnxruntime: checked against a real session's metadata on the tiny UNet, and on a
// graph whose inputs include an initializer (sessions do not list those).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeModel } from '../../../../daemon/onnx/graph/model-io.js';
import { DataType } from '../../../../daemon/onnx/graph/onnx-proto.js';
import { makeGraph, makeModel, makeNode, makeTensor, valueInfo } from '../../../../daemon/onnx/graph/nodes.js';
import { declaredSignature } from '../../../../daemon/onnx/graph/signature.js';
import { writeTinyStableDiffusion } from '../../../../daemon/onnx/tiny/stable-diffusion.js';

const dirs: string[] = [];
afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

describe('declaredSignature', () => {
  it('lists what a session lists for the tiny UNet, both flavours', async () => {
    for (const flavour of ['opset14', 'opset17'] as const) {
      const dir = await mkdtemp(join(tmpdir(), 'p2pz-signature-'));
      dirs.push(dir);
      await writeTinyStableDiffusion(dir, { flavour, components: ['unet'] });
      const path = join(dir, 'unet/model.onnx');
      const session = await ort.InferenceSession.create(path);
      const declared = declaredSignature(await readFile(path));
      expect(declared.inputNames).toEqual(session.inputNames);
      expect(declared.outputNames).toEqual(session.outputNames);
      expect(declared.inputMetadata).toEqual(session.inputMetadata);
      expect(declared.outputMetadata).toEqual(session.outputMetadata);
      await session.release();
    }
  });

  it('leaves out graph inputs that are initializers', () => {
    const model = makeModel({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: makeGraph({
        name: 'g',
        node: [makeNode('Add', ['x', 'w'], ['y'], 'add')],
        initializer: [makeTensor('w', DataType.FLOAT, [2], [1, 2])],
        input: [valueInfo('x', DataType.FLOAT, ['batch', 2]), valueInfo('w', DataType.FLOAT, [2])],
        output: [valueInfo('y', DataType.FLOAT, ['batch', 2])],
      }),
    });
    const s = declaredSignature(encodeModel(model));
    expect(s.inputNames).toEqual(['x']);
    expect(s.inputMetadata).toEqual([{ name: 'x', isTensor: true, type: 'float32', shape: ['batch', 2] }]);
  });
});
