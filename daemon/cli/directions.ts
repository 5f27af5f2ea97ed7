// `p2pz directions list|make`: the concepts that ship with p2pz, and computing (and caching) an edit
// direction Δ = mean E_text(target bank) − mean E_text(source bank) for a model, from the built-in
// template banks or the user's own sentence files. `make --out FILE` also writes Δ as a [1,77,D]
// float32 .npy.
import { writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { P2pzError } from '../../shared/protocol/index.js';
import { defaultHome, HOME_LAYOUT, homePaths } from '../config.js';
import { loadTextModel } from '../pipeline/diffusion-model.js';
import { importConceptEmbeddings } from '../pipeline/directions/concept-embeddings.js';
import { editDirection } from '../pipeline/directions/edit-direction.js';
import { BUILT_IN_CONCEPTS, loadUserBank, SENTENCE_BANK_DEFAULTS, SENTENCE_BANK_LIMITS, sentenceBankPair } from '../pipeline/directions/sentence-bank.js';
import { encodeNpy } from '../pipeline/dump/npy.js';
import { chooseExecution, devicePreference } from '../worker/providers.js';
import { SessionCache } from '../worker/sessions.js';
import { intFlag, parseFlags, type CliCommand, type CliIo } from './command.js';
import { dataDirCaches, EDIT_CLI_DEFAULTS } from './edit.js';
import { RUN_JOB_DEFAULTS } from '../worker/run-job.js';

const USAGE = `p2pz directions list
p2pz directions make --from WORD --to WORD [--model DIR] [--count N] [--out NPY]
                     [--source-bank FILE --target-bank FILE] [--device auto|cpu|cuda|webgpu|coreml|dml]
p2pz directions import --concept WORD --embeddings NPY [--model DIR] [--device auto|cpu|cuda|webgpu|coreml|dml]

list    the built-in concepts by kind (any other word works too, with generic sentences)
make    computes Δ for the model's text encoder and caches it in $P2PZ_HOME/${HOME_LAYOUT.cache}/${RUN_JOB_DEFAULTS.directionCache}
import  stores a concept's precomputed embeddings (float32 .npy, [N,77,D] sentence embeddings or a
        [77,D] mean) for the model's text encoder; an edit whose two concepts are both imported uses
        Δ = mean(target) − mean(source). The paper's released SD 1.4 means (assets/embeddings_sd_1.4/
        cat.pt, …) convert once with:
        python3 -c "import sys,torch,numpy; numpy.save(sys.argv[2], torch.load(sys.argv[1], map_location='cpu').float().numpy())" cat.pt cat.npy`;

function list(args: readonly string[], io: CliIo): number {
  parseFlags(args, {});
  const byKind = new Map<string, string[]>();
  for (const [word, kind] of Object.entries(BUILT_IN_CONCEPTS)) byKind.set(kind, [...(byKind.get(kind) ?? []), word]);
  for (const [kind, words] of byKind) io.out(`${kind}: ${words.join(', ')}\n`);
  return 0;
}

/** The text encoder of `--model` (default: the home's default model) on the chosen device, with the
 *  home's direction cache; the caller runs `use` and the sessions are released after it. */
async function withTextModel<T>(values: { readonly model?: string; readonly device?: string }, io: CliIo,
  use: (models: SessionCache, model: Awaited<ReturnType<typeof loadTextModel>>, directionCacheDir: string) => Promise<T>): Promise<T> {
  if (values.device !== undefined) devicePreference(values.device);
  const paths = homePaths(defaultHome(io.env));
  const modelDir = resolve(values.model ?? join(paths.models, EDIT_CLI_DEFAULTS.defaultModel));
  const execution = await chooseExecution(devicePreference(values.device, io.env));
  const models = new SessionCache({ modelsDir: dirname(modelDir), executionProviders: execution.executionProviders, sessionOptions: execution.sessionOptions });
  try {
    return await use(models, await loadTextModel(models, basename(modelDir)), dataDirCaches(paths).directionCacheDir);
  } finally {
    await models.releaseAll();
  }
}

async function make(args: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseFlags(args, {
    from: { type: 'string' },
    to: { type: 'string' },
    model: { type: 'string' },
    count: { type: 'string' },
    out: { type: 'string' },
    device: { type: 'string' },
    'source-bank': { type: 'string' },
    'target-bank': { type: 'string' },
  });
  if (values.from === undefined || values.to === undefined) throw new P2pzError('E_BAD_REQUEST', 'Both --from and --to are required.', USAGE.split('\n')[1]);
  if ((values['source-bank'] === undefined) !== (values['target-bank'] === undefined)) {
    throw new P2pzError('E_BAD_REQUEST', '--source-bank and --target-bank go together.');
  }
  const count = intFlag('count', values.count, 1, SENTENCE_BANK_LIMITS.maxCount) ?? SENTENCE_BANK_DEFAULTS.count;
  const banks = values['source-bank'] !== undefined && values['target-bank'] !== undefined
    ? { source: await loadUserBank(values['source-bank']), target: await loadUserBank(values['target-bank']) }
    : sentenceBankPair(values.from, values.to, { count });
  await withTextModel(values, io, async (models, model, cacheDir) => {
    const d = await editDirection(models, model, banks, { cacheDir });
    let norm = 0;
    for (const v of d.delta) norm += v * v;
    if (values.out !== undefined) await writeFile(values.out, encodeNpy(d.delta, [1, d.tokens, d.width]));
    io.out(`${values.from} → ${values.to}: ${banks.source.length} + ${banks.target.length} sentences, ‖Δ‖ = ${Math.sqrt(norm).toPrecision(4)}${d.cached ? ' (cached)' : ''}, key ${d.key.slice(0, 16)}\n`);
  });
  return 0;
}

async function importEmbeddings(args: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseFlags(args, {
    concept: { type: 'string' },
    embeddings: { type: 'string' },
    model: { type: 'string' },
    device: { type: 'string' },
  });
  if (values.concept === undefined || values.embeddings === undefined) throw new P2pzError('E_BAD_REQUEST', 'Both --concept and --embeddings are required.', USAGE.split('\n')[3]);
  const { concept, embeddings } = values;
  await withTextModel(values, io, async (models, model, cacheDir) => {
    const r = await importConceptEmbeddings(models, model, cacheDir, concept, embeddings);
    io.out(`${concept}: ${r.count} embedding${r.count === 1 ? '' : 's'} of [${r.tokens},${r.width}] imported for ${model.name}'s text encoder\n`);
  });
  return 0;
}

export const directionsCommand: CliCommand = {
  name: 'directions',
  summary: 'list built-in concepts, compute an edit direction, or import concept embeddings: p2pz directions make --from cat --to dog',
  usage: USAGE,
  async run(args, io) {
    const [sub, ...rest] = args;
    if (sub === 'list') return list(rest, io);
    if (sub === 'make') return make(rest, io);
    if (sub === 'import') return importEmbeddings(rest, io);
    throw new P2pzError('E_BAD_REQUEST', 'Use `p2pz directions list`, `make` or `import`.', USAGE.split('\n')[0]);
  },
};
