// The GAN generator registry: meta.json says which direction a generator translates; broken folders
// are reported, not used; a missing direction is E_MODEL_MISSING naming it.
import { mkdir, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findGanGenerator, listGanGenerators, lookupGanGenerator } from '../../../daemon/pipeline/preview-registry.js';
import { normalizeConcept } from '../../../daemon/models/gan-meta.js';
import type { ModelFiles } from '../../../daemon/pipeline/context.js';
import { resolveModelPath } from '../../../daemon/models/model-path.js';

let root: string;
let files: ModelFiles;

async function folder(name: string, meta: string | object | null, generator = true): Promise<void> {
  const dir = join(root, 'gan', name);
  await mkdir(dir, { recursive: true });
  if (meta !== null) await writeFile(join(dir, 'meta.json'), typeof meta === 'string' ? meta : JSON.stringify(meta));
  if (generator) await writeFile(join(dir, 'generator.onnx'), 'weights');
}

beforeAll(async () => {
  root = await realpath(await mkdtemp(join(tmpdir(), 'p2pz-registry-')));
  files = { modelsDir: root, resolve: (p) => resolveModelPath(root, p) };
  await folder('cat-dog', { v: 1, source: 'cat', target: 'dog', size: 512, from: { model: 'sd15', settings: { steps: 50 } }, dataHash: 'sha256:ab' });
  // Concepts with spaces and hyphens: the folder name is only a convention.
  await folder('golden_retriever-t-rex', { v: 1, source: 'Golden Retriever', target: 't-rex', size: 256 });
  await folder('not-json', '{ nope');
  await folder('bad-size', { v: 1, source: 'horse', target: 'zebra', size: 0 });
  await folder('no-meta', null);
  await folder('no-weights', { v: 1, source: 'summer', target: 'winter', size: 512 }, false);
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('preview registry', () => {
  it('lists valid generators and reports the others with a coded reason', async () => {
    const { generators, problems } = await listGanGenerators(files);
    expect(generators.map((g) => [g.name, g.meta.source, g.meta.target, g.meta.size])).toEqual([
      ['cat-dog', 'cat', 'dog', 512],
      ['golden_retriever-t-rex', 'Golden Retriever', 't-rex', 256],
    ]);
    expect(generators[0]?.modelPath).toBe(join(root, 'gan', 'cat-dog', 'generator.onnx'));
    expect(generators[0]?.meta.from).toEqual({ model: 'sd15', settings: { steps: 50 } });
    expect(Object.fromEntries(problems.map((p) => [p.name, p.error.code]))).toEqual({
      'bad-size': 'E_MODEL_INVALID',
      'no-meta': 'E_MODEL_MISSING',
      'no-weights': 'E_MODEL_MISSING',
      'not-json': 'E_MODEL_INVALID',
    });
    expect(problems.find((p) => p.name === 'bad-size')?.error.message).toContain('invalid meta.json (size:');
  });

  it('finds a direction by its concepts, case and spacing aside', async () => {
    expect((await findGanGenerator(files, 'Cat', 'DOG')).name).toBe('cat-dog');
    expect((await findGanGenerator(files, 'golden   retriever', 'T-Rex')).name).toBe('golden_retriever-t-rex');
  });

  it('is directional: dog → cat is not cat → dog', async () => {
    await expect(findGanGenerator(files, 'dog', 'cat')).rejects.toMatchObject({
      code: 'E_MODEL_MISSING',
      message: 'The model this edit needs is not installed. No quick-preview generator is installed for “dog → cat”.',
    });
  });

  it('a direction installed broken says why instead of "not installed"', async () => {
    await expect(findGanGenerator(files, 'summer', 'winter')).rejects.toMatchObject({ code: 'E_MODEL_MISSING', message: expect.stringContaining('A file of the model is missing') });
  });

  it('a lookup reads the folder again only once something it read has changed', async () => {
    const dir = await realpath(await mkdtemp(join(tmpdir(), 'p2pz-registry-stamp-')));
    let reads = 0;
    const counted: ModelFiles = { modelsDir: dir, resolve: (p) => { reads++; return resolveModelPath(dir, p); } };
    const put = async (name: string, meta: object | null, generator: boolean): Promise<void> => {
      await mkdir(join(dir, 'gan', name), { recursive: true });
      if (meta !== null) await writeFile(join(dir, 'gan', name, 'meta.json'), JSON.stringify(meta));
      if (generator) await writeFile(join(dir, 'gan', name, 'generator.onnx'), 'weights');
    };
    try {
      expect(await lookupGanGenerator(counted, 'cat', 'dog')).toBeNull();
      await put('cat-dog', { v: 1, source: 'cat', target: 'dog', size: 512 }, true);
      expect((await lookupGanGenerator(counted, 'cat', 'dog'))?.name).toBe('cat-dog');
      const afterListing = reads;
      expect(afterListing).toBeGreaterThan(0);
      // Unchanged: the listing is reused, nothing is read.
      expect((await lookupGanGenerator(counted, 'cat', 'dog'))?.name).toBe('cat-dog');
      expect(await lookupGanGenerator(counted, 'dog', 'cat')).toBeNull();
      expect(reads).toBe(afterListing);
      // A meta file rewritten in place: the direction it names now.
      await writeFile(join(dir, 'gan', 'cat-dog', 'meta.json'), JSON.stringify({ v: 1, source: 'cat', target: 'wolf', size: 512 }));
      expect((await lookupGanGenerator(counted, 'cat', 'wolf'))?.name).toBe('cat-dog');
      expect(await lookupGanGenerator(counted, 'cat', 'dog')).toBeNull();
      // A generator whose weights arrive after its meta file: broken, then found.
      await put('summer-winter', { v: 1, source: 'summer', target: 'winter', size: 512 }, false);
      await expect(lookupGanGenerator(counted, 'summer', 'winter')).rejects.toMatchObject({ code: 'E_MODEL_MISSING' });
      await writeFile(join(dir, 'gan', 'summer-winter', 'generator.onnx'), 'weights');
      expect((await lookupGanGenerator(counted, 'summer', 'winter'))?.name).toBe('summer-winter');
      // Removed: gone at once.
      await rm(join(dir, 'gan', 'cat-dog'), { recursive: true });
      expect(await lookupGanGenerator(counted, 'cat', 'wolf')).toBeNull();
      expect(reads).toBeGreaterThan(afterListing);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('no gan/ folder means nothing installed', async () => {
    const empty = await realpath(await mkdtemp(join(tmpdir(), 'p2pz-registry-empty-')));
    try {
      expect(await listGanGenerators({ modelsDir: empty, resolve: (p) => resolveModelPath(empty, p) })).toEqual({ generators: [], problems: [] });
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });

  it('normalizes concepts', () => {
    expect(normalizeConcept('  Golden \t Retriever ')).toBe('golden retriever');
  });
});
