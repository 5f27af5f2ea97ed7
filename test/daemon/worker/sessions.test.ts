// The session LRU: contained paths, release on eviction, and docs/SECURITY.md §R18: onnxruntime's allocation failures
// become E_DEVICE_OOM with every session released, so the next job succeeds.
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tensor } from 'onnxruntime-node';
import type { InferenceSession } from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataType, onnx } from '../../../daemon/onnx/graph/onnx-proto.js';
import { SessionCache, isOutOfMemoryMessage } from '../../../daemon/worker/sessions.js';
import type { Session, SessionFactory } from '../../../daemon/worker/sessions.js';

/** Allocation failures as onnxruntime reports them. The first is what onnxruntime-node 1.30 threw here
 *  (the test below provokes it for real); the others come from its CUDA allocator, the BFC arena on a
 *  full GPU, and the C++ runtime. */
const OOM_MESSAGES = [
  "Non-zero status code returned while running ConstantOfShape node. Name:'big' Status Message: /onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:360 void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*) Failed to allocate memory for requested buffer of size 4398046511104\n",
  'CUDA failure 2: out of memory ; GPU=0 ; hostname=box ; file=/onnxruntime_src/onnxruntime/core/providers/cuda/cuda_allocator.cc ; line=47 ; expr=cudaMalloc((void**)&p, size);',
  "Non-zero status code returned while running MatMul node. Name:'/up_blocks.3/attentions.2/transformer_blocks.0/attn1/MatMul' Status Message: /onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:359 void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*, bool, onnxruntime::WaitNotificationFn) Available memory of 0 is smaller than requested bytes of 1073741824",
  'std::bad_alloc',
  'CUBLAS failure 3: CUBLAS_STATUS_ALLOC_FAILED ; GPU=0',
];

/** A GPU that went away, as each stack reports it: Dawn's device-lost callback text as onnxruntime's
 *  WebGPU context logs it ("WebGPU device lost (<reason>): <message>", webgpu_context.cc), Direct3D 12's
 *  removal HRESULT as DirectML returns it, CUDA's unknown error after an Xid, and the driver's words. */
const DEVICE_LOST_MESSAGES = [
  'WebGPU device lost (2): Device was destroyed.',
  "Non-zero status code returned while running MatMul node. Name:'/attn1/MatMul' Status Message: C:\\a\\_work\\1\\s\\onnxruntime\\core\\providers\\dml\\DmlExecutionProvider\\src\\DmlCommandRecorder.cpp(372)\\onnxruntime.dll!00007FFB: (caller: 00007FFB) Exception(3) tid(4f1c) 887A0005 The GPU device instance has been suspended. Use GetDeviceRemovedReason to determine the appropriate action.",
  'CUDA failure 999: unknown error ; GPU=0 ; hostname=box ; file=/onnxruntime_src/onnxruntime/core/providers/cuda/cuda_call.cc ; line=129',
  'NVRM: GPU at PCI:0000:01:00: GPU has fallen off the bus.',
];

let root: string;
let models: string;

/** y = ConstantOfShape(shape): allocates whatever it is asked for, so a huge shape is a real OOM. */
function constantOfShapeModel(): Uint8Array {
  return onnx.ModelProto.encode(
    onnx.ModelProto.create({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'alloc',
        node: [{ opType: 'ConstantOfShape', input: ['shape'], output: ['y'], name: 'big' }],
        input: [{ name: 'shape', type: { tensorType: { elemType: DataType.INT64, shape: { dim: [{ dimValue: 1 }] } } } }],
        output: [{ name: 'y', type: { tensorType: { elemType: DataType.FLOAT } } }],
      },
    }),
  ).finish();
}

const shape = (n: bigint) => ({ shape: new Tensor('int64', BigInt64Array.from([n]), [1]) });

beforeAll(async () => {
  root = await realpath(await mkdtemp(join(tmpdir(), 'p2pz-sessions-')));
  models = join(root, 'models');
  await mkdir(join(models, 'm'), { recursive: true });
  await writeFile(join(models, 'm', 'alloc.onnx'), constantOfShapeModel());
  await writeFile(join(models, 'm', 'broken.onnx'), 'not a model');
  await writeFile(join(root, 'outside.onnx'), constantOfShapeModel());
  await symlink(join(root, 'outside.onnx'), join(models, 'm', 'escape.onnx'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Fake sessions that count releases and throw the queued errors from run(). */
function fakeFactory(): SessionFactory & { created: string[]; released: string[]; failNext: string[] } {
  const created: string[] = [];
  const released: string[] = [];
  const failNext: string[] = [];
  const factory: SessionFactory = async (path) => {
    created.push(path);
    const session: Session = {
      inputNames: ['shape'],
      outputNames: ['y'],
      inputMetadata: [],
      outputMetadata: [],
      run: (async () => {
        const message = failNext.shift();
        if (message !== undefined) throw new Error(message);
        return {};
      }) as Session['run'],
      release: async () => {
        released.push(path);
      },
    };
    return session;
  };
  return Object.assign(factory, { created, released, failNext });
}

describe('isOutOfMemoryMessage', () => {
  it.each(OOM_MESSAGES)('recognises %s', (message) => {
    expect(isOutOfMemoryMessage(message)).toBe(true);
  });

  it.each([
    "Non-zero status code returned while running Conv node. Name:'/conv_in/Conv' Status Message: Invalid input shape: {1,4,64}",
    'Got invalid dimensions for input: sample for the following indices index: 1 Got: 3 Expected: 4',
    'Load model from x failed:Protobuf parsing failed.',
  ])('does not take %s for an OOM', (message) => {
    expect(isOutOfMemoryMessage(message)).toBe(false);
  });
});

describe('SessionCache', () => {
  it('maps a real onnxruntime allocation failure to E_DEVICE_OOM, releases every session, and the next run works', async () => {
    const cache = new SessionCache({ modelsDir: models, executionProviders: ['cpu'] });
    const small = await cache.run('m/alloc.onnx', shape(3n));
    expect(Array.from((small['y'] as Tensor).data as Float32Array)).toEqual([0, 0, 0]);
    expect(cache.size).toBe(1);

    // 2^40 float32 = 4 TiB: the CPU arena refuses it.
    await expect(cache.run('m/alloc.onnx', shape(2n ** 40n))).rejects.toMatchObject({
      code: 'E_DEVICE_OOM',
      message: 'The device ran out of memory during the edit.',
    });
    expect(cache.size).toBe(0);

    const again = await cache.run('m/alloc.onnx', shape(2n));
    expect((again['y'] as Tensor).dims).toEqual([2]);
    await cache.releaseAll();
  });

  it.each(OOM_MESSAGES)('maps a session throwing %s to E_DEVICE_OOM and releases every session', async (message) => {
    const create = fakeFactory();
    const cache = new SessionCache({ modelsDir: models, executionProviders: ['cuda', 'cpu'], create });
    await cache.get('m/broken.onnx');
    create.failNext.push(message);
    await expect(cache.run('m/alloc.onnx', {})).rejects.toMatchObject({ code: 'E_DEVICE_OOM' });
    expect(create.released.sort()).toEqual([join(models, 'm', 'alloc.onnx'), join(models, 'm', 'broken.onnx')]);
    expect(cache.size).toBe(0);
    // The next job loads afresh and runs.
    await expect(cache.run('m/alloc.onnx', {})).resolves.toEqual({});
    expect(create.created).toHaveLength(3);
  });

  it.each(DEVICE_LOST_MESSAGES)('on a GPU provider, maps %s to E_DEVICE_LOST, releases every session, and the next run loads afresh', async (message) => {
    const create = fakeFactory();
    const cache = new SessionCache({ modelsDir: models, executionProviders: ['webgpu', 'cpu'], create });
    await cache.get('m/broken.onnx');
    create.failNext.push(message);
    const err = await cache.run('m/alloc.onnx', {}).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'E_DEVICE_LOST', message: expect.stringMatching(/^The GPU stopped responding during the edit .*\. \S/) });
    expect((err as Error).message).not.toMatch(/\/onnxruntime_src|\/home\//);
    expect(cache.size).toBe(0);
    expect(create.released).toHaveLength(2);
    await expect(cache.run('m/alloc.onnx', {})).resolves.toEqual({});
  });

  it('on a GPU provider, any other failure while running is E_DEVICE_FAILED with the first line; on the CPU it stays E_MODEL_INVALID', async () => {
    const kernel = "Non-zero status code returned while running Conv node. Name:'/conv_in/Conv' Status Message: /onnxruntime_src/onnxruntime/core/providers/webgpu/webgpu_context.cc:412 Program Conv2d failed validation\nsecond line";
    for (const [providers, code] of [[['dml', 'cpu'], 'E_DEVICE_FAILED'], [[{ name: 'coreml', coreMlFlags: 16 }, 'cpu'], 'E_DEVICE_FAILED'], [['cpu'], 'E_MODEL_INVALID']] as const) {
      const create = fakeFactory();
      const cache = new SessionCache({ modelsDir: models, executionProviders: providers, create });
      create.failNext.push(kernel);
      const err = await cache.run('m/alloc.onnx', {}).catch((e: unknown) => e);
      expect(err).toMatchObject({ code });
      expect((err as Error).message).toMatch(/Non-zero status code returned while running Conv node\. .*Program Conv2d failed validation$/);
      expect((err as Error).message).not.toContain('/onnxruntime_src/');
      expect((err as Error).message).not.toContain('second line');
      expect(cache.size).toBe(code === 'E_DEVICE_FAILED' ? 0 : 1);
      await expect(cache.run('m/alloc.onnx', {})).resolves.toEqual({});
    }
  });

  it('maps an allocation failure while loading to E_DEVICE_OOM', async () => {
    const cache = new SessionCache({
      modelsDir: models,
      executionProviders: ['cpu'],
      create: async () => {
        throw new Error(OOM_MESSAGES[1]);
      },
    });
    await expect(cache.get('m/alloc.onnx')).rejects.toMatchObject({ code: 'E_DEVICE_OOM' });
    expect(cache.size).toBe(0);
  });

  it('passes the provider list and keys sessions by real path, loading each model once', async () => {
    const seen: InferenceSession.SessionOptions[] = [];
    const create = fakeFactory();
    const cache = new SessionCache({
      modelsDir: models,
      executionProviders: ['cuda', 'cpu'],
      create: (path, options) => {
        seen.push(options);
        return create(path, options);
      },
    });
    const [a, b] = await Promise.all([cache.get('m/alloc.onnx'), cache.get(join(models, 'm', '..', 'm', 'alloc.onnx'))]);
    expect(a).toBe(b);
    expect(create.created).toEqual([join(models, 'm', 'alloc.onnx')]);
    expect(seen[0]?.executionProviders).toEqual(['cuda', 'cpu']);
  });

  it('releases the least recently used session beyond maxSessions', async () => {
    const create = fakeFactory();
    await writeFile(join(models, 'm', 'c.onnx'), 'c');
    const cache = new SessionCache({ modelsDir: models, executionProviders: ['cpu'], maxSessions: 2, create });
    await cache.get('m/alloc.onnx');
    await cache.get('m/broken.onnx');
    await cache.get('m/alloc.onnx'); // alloc is now the most recent
    await cache.get('m/c.onnx');
    expect(create.released).toEqual([join(models, 'm', 'broken.onnx')]);
    expect(cache.size).toBe(2);
    expect(() => new SessionCache({ modelsDir: models, executionProviders: ['cpu'], maxSessions: 0 })).toThrow(RangeError);
  });

  it('keeps one UNet roles model open per folder: another working size replaces it, other files stay', async () => {
    const create = fakeFactory();
    await mkdir(join(models, 'r', 'unet'), { recursive: true });
    for (const f of ['model.roles.64x64.onnx', 'model.roles.32x32.onnx', 'model.onnx']) await writeFile(join(models, 'r', 'unet', f), 'x');
    await mkdir(join(models, 's', 'unet'), { recursive: true });
    await writeFile(join(models, 's', 'unet', 'model.roles.64x64.onnx'), 'x');
    const cache = new SessionCache({ modelsDir: models, executionProviders: ['cpu'], create });
    await cache.get('r/unet/model.roles.64x64.onnx');
    await cache.get('r/unet/model.onnx');
    await cache.get('s/unet/model.roles.64x64.onnx');
    expect(create.released).toEqual([]);
    await cache.get('r/unet/model.roles.32x32.onnx');
    expect(create.released).toEqual([join(models, 'r', 'unet', 'model.roles.64x64.onnx')]);
    expect(cache.size).toBe(3);
    // The same file again is a cache hit, not a replacement.
    await cache.get('r/unet/model.roles.32x32.onnx');
    expect(create.created.filter((p) => p.endsWith('model.roles.32x32.onnx'))).toHaveLength(1);
  });

  it('refuses a model linked from outside the models directory before onnxruntime sees it (R19)', async () => {
    const create = fakeFactory();
    const cache = new SessionCache({ modelsDir: models, executionProviders: ['cpu'], create });
    await expect(cache.get('m/escape.onnx')).rejects.toMatchObject({ code: 'E_MODEL_INVALID' });
    await expect(cache.get('../outside.onnx')).rejects.toMatchObject({ code: 'E_MODEL_INVALID' });
    expect(create.created).toEqual([]);
  });

  it('checks a path when its session opens, not on every call; a reopened session is checked again (R19)', async () => {
    const create = fakeFactory();
    const cache = new SessionCache({ modelsDir: models, executionProviders: ['cpu'], maxSessions: 1, create });
    const swap = join(models, 'm', 'swap.onnx');
    await writeFile(swap, constantOfShapeModel());
    const first = await cache.get('m/swap.onnx');
    // The file is replaced by a link leading out: the open session still holds the checked file.
    await rm(swap);
    await symlink(join(root, 'outside.onnx'), swap);
    expect(await cache.get('m/swap.onnx')).toBe(first);
    await cache.run('m/swap.onnx', shape(1n));
    expect(create.created).toEqual([swap]);
    // Evicted (another model opened), then asked for again: checked again, and refused.
    await writeFile(join(models, 'm', 'other.onnx'), constantOfShapeModel());
    await cache.get('m/other.onnx');
    expect(create.released).toEqual([swap]);
    await expect(cache.get('m/swap.onnx')).rejects.toMatchObject({ code: 'E_MODEL_INVALID' });
    // The same after releaseAll.
    await rm(swap);
    await writeFile(swap, constantOfShapeModel());
    await cache.get('m/swap.onnx');
    await rm(swap);
    await symlink(join(root, 'outside.onnx'), swap);
    await cache.releaseAll();
    await expect(cache.run('m/swap.onnx', shape(1n))).rejects.toMatchObject({ code: 'E_MODEL_INVALID' });
    expect(create.created).toEqual([swap, join(models, 'm', 'other.onnx'), swap]);
  });

  it('heldBytes: graph files of the open sessions under a folder, each with the weights beside it', async () => {
    const create = fakeFactory();
    const cache = new SessionCache({ modelsDir: models, executionProviders: ['cpu'], create });
    const w = join(models, 'held', 'unet');
    await mkdir(w, { recursive: true });
    await writeFile(join(w, 'model.onnx'), new Uint8Array(100));
    await writeFile(join(w, 'model.xattn.8x8.onnx'), new Uint8Array(30));
    await writeFile(join(w, 'model.onnx_data'), new Uint8Array(1000));
    await writeFile(join(w, 'model.prepared.8x8.json'), '{}');
    await mkdir(join(models, 'held', 'vae_decoder'), { recursive: true });
    await writeFile(join(models, 'held', 'vae_decoder', 'model.onnx'), new Uint8Array(7));
    expect(await cache.heldBytes('held')).toBe(0);
    await cache.get('held/unet/model.onnx');
    expect(await cache.heldBytes('held')).toBe(100 + 1000);
    await cache.get('held/unet/model.xattn.8x8.onnx');
    await cache.get('held/vae_decoder/model.onnx');
    await cache.get('m/alloc.onnx'); // another model's session is not counted
    expect(await cache.heldBytes(join(models, 'held'))).toBe(100 + 1000 + 30 + 1000 + 7);
    expect(await cache.heldBytes('held/vae_decoder')).toBe(7);
    expect(await cache.heldBytes('nowhere')).toBe(0);
    await cache.releaseAll();
    expect(await cache.heldBytes('held')).toBe(0);
  });

  it('a file that is not a model is E_MODEL_INVALID without paths in the message', async () => {
    const cache = new SessionCache({ modelsDir: models, executionProviders: ['cpu'] });
    const err = await cache.get('m/broken.onnx').then(
      () => null,
      (e: unknown) => e as Error & { code: string },
    );
    expect(err?.code).toBe('E_MODEL_INVALID');
    expect(err?.message).toMatch(/^The installed model is damaged or incomplete\. The model could not be loaded: /);
    expect(err?.message).not.toContain(root);
    expect(cache.size).toBe(0);
  });
});
