// `p2pz distill pairs|register`: the command-line half of distilling an edit direction into a quick
// preview generator. `pairs` runs the full pipeline over a folder of images into a training set
// (daemon/distill/pairs.ts; resumable, Ctrl-C stops after the current step); training is
// models/distill/train.py (PyTorch); `register` checks the trained generator with onnxruntime and
// installs it into the models directory (daemon/distill/register.ts).
import { basename, dirname, join, resolve } from 'node:path';
import { P2pzError } from '../../shared/protocol/index.js';
import { defaultHome, homePaths } from '../config.js';
import { PAIR_FILTER_DEFAULTS } from '../distill/filter.js';
import { generatePairs, type PairEdit, type PairsReport } from '../distill/pairs.js';
import { registerGenerator } from '../distill/register.js';
import { parseRedisUrl } from '../team/redis-url.js';
import { chooseExecution, devicePreference } from '../worker/providers.js';
import { SessionCache } from '../worker/sessions.js';
import { intFlag, parseFlags, type CliCommand, type CliIo } from './command.js';
import { dataDirCaches, EDIT_CLI_DEFAULTS } from './edit.js';
import { EDIT_FLAG_OPTIONS, editParamsFromFlags, modelFolder, numberFlag, userBanksFromFlags } from './edit-flags.js';

const F = PAIR_FILTER_DEFAULTS;
const USAGE = `p2pz distill pairs --from WORD --to WORD --images DIR --out DATASET [options]
p2pz distill register RUN [--models DIR]

pairs: edits every PNG/JPEG/WebP in DIR with pix2pix-zero and writes DATASET/manifest.json and
DATASET/pairs/ (source at the working size, edit, attention mask). Run it again to continue an
interrupted run. Edits are dropped when the mask covers < --min-mask of the image (default ${F.minMaskCoverage}),
or the mean change |y − x| is < --min-change (${F.minChange}) or > --max-change (${F.maxChange}).
  --model NAME|DIR  a model as "p2pz models list" names it, or an SD 1.x ONNX folder (default ${EDIT_CLI_DEFAULTS.defaultModel})
  --caption, --steps, --seed, --xa, --cfg, --reg-steps, --size, --edit-scale, --device,
  --source-bank, --target-bank   as for \`p2pz edit\`
  --queue URL   run the edits on a team's GPU workers (\`p2pz worker\`, docs/TEAM.md) through this Redis
                (redis://HOST:PORT/N), as many at once as workers are connected (or --in-flight N); the
                model must be installed here too (the manifest records its hash) and on the workers

Train on DATASET with models/distill/train.py (see models/distill/README.md).

register: checks RUN/generator.onnx (train.py's --out) against the runtime with onnxruntime and
installs it with its meta.json as the quick preview of its direction, in DIR/gan/ (default
$P2PZ_HOME/models).`;

function fraction(name: string, value: string | undefined): number | undefined {
  const n = numberFlag(name, value);
  if (n !== undefined && (n < 0 || n > 1)) throw new P2pzError('E_BAD_REQUEST', `--${name} must be between 0 and 1.`);
  return n;
}

async function pairs(args: readonly string[], io: CliIo, signal: AbortSignal): Promise<PairsReport> {
  const { values } = parseFlags(args, {
    ...EDIT_FLAG_OPTIONS,
    images: { type: 'string' },
    out: { type: 'string' },
    'min-mask': { type: 'string' },
    'min-change': { type: 'string' },
    'max-change': { type: 'string' },
    queue: { type: 'string' },
    'in-flight': { type: 'string' },
  });
  const first = USAGE.split('\n')[0];
  if (values.images === undefined || values.out === undefined) throw new P2pzError('E_BAD_REQUEST', 'Both --images and --out are required.', first);
  const edit = editParamsFromFlags(values, first ?? '');
  const filter = {
    ...(values['min-mask'] === undefined ? {} : { minMaskCoverage: fraction('min-mask', values['min-mask']) }),
    ...(values['min-change'] === undefined ? {} : { minChange: fraction('min-change', values['min-change']) }),
    ...(values['max-change'] === undefined ? {} : { maxChange: fraction('max-change', values['max-change']) }),
  };
  const banks = await userBanksFromFlags(values);

  const paths = homePaths(defaultHome(io.env));
  const modelDir = modelFolder(values.model, paths.models, EDIT_CLI_DEFAULTS.defaultModel);
  const execution = await chooseExecution(devicePreference(values.device, io.env));
  const models = new SessionCache({ modelsDir: dirname(modelDir), executionProviders: execution.executionProviders, sessionOptions: execution.sessionOptions, maxSessions: EDIT_CLI_DEFAULTS.maxSessions });
  const team = values.queue === undefined ? undefined : await teamEdits(values.queue, intFlag('in-flight', values['in-flight'], 1, 64), banks !== undefined, basename(modelDir));
  try {
    return await generatePairs({
      images: resolve(values.images),
      out: resolve(values.out),
      edit,
      model: basename(modelDir),
      filter,
      ...(banks ? { banks } : {}),
    }, {
      models,
      signal,
      memory: { provider: execution.device.provider },
      ...dataDirCaches(paths),
      ...(team === undefined ? {} : { edit: team.edit, concurrency: team.concurrency }),
      onPair: (entry, reused, done, total) => {
        const what = entry.status === 'kept' ? 'kept' : entry.status === 'dropped' ? `dropped (${entry.reason})` : `failed (${entry.error.code})`;
        const extra = entry.status === 'failed' || reused ? '' : ` mask ${entry.metrics.maskCoverage.toFixed(3)}, change ${entry.metrics.change.toFixed(3)}, ${entry.seconds.toFixed(1)} s`;
        io.err(`[${done}/${total}] ${entry.name}: ${what}${reused ? ', done before' : ''}${extra}\n`);
      },
    });
  } finally {
    await team?.close();
    await models.releaseAll();
  }
}

/** The pairs' edits as render jobs on a team's queue, the images travelling inline through Redis. */
async function teamEdits(url: string, inFlight: number | undefined, ownBanks: boolean, model: string): Promise<{ edit: PairEdit; concurrency: number; close(): Promise<void> }> {
  if (ownBanks) {
    throw new P2pzError('E_BAD_REQUEST', 'Sentence banks of your own cannot be sent to a team\'s workers.', 'Run without --queue, or import the banks\' directions on every worker (`p2pz directions import`).');
  }
  const { TeamEngine } = await import('../team/team-engine.js');
  const engine = await TeamEngine.open(parseRedisUrl(url), { inline: true });
  const workers = engine.health().team?.workers ?? 0;
  if (inFlight === undefined && workers === 0) {
    await engine.close();
    throw new P2pzError('E_ENGINE_UNAVAILABLE', 'No GPU worker is connected to this queue.', 'Start `p2pz worker` on the GPU machines first, or give --in-flight N to queue for workers that start later.');
  }
  let count = 0;
  const edit: PairEdit = async (input, params, signal) => {
    count += 1;
    const result = await engine.run({ jobId: `pair_${count.toString().padStart(6, '0')}`, kind: 'render', image: input, model, edit: params, stepPreviews: false }, () => undefined, signal);
    if (result.status === 'failed') throw P2pzError.fromBody(result.error);
    if (result.status === 'cancelled') throw new P2pzError('E_INTERNAL', 'The edit was cancelled.');
    const image = result.outputs.find((o) => o.role === 'image');
    const mask = result.outputs.find((o) => o.role === 'mask');
    if (!image || !mask) throw new P2pzError('E_INTERNAL', 'The edit returned no image or no mask.');
    return { image: image.png, mask: mask.png };
  };
  return { edit, concurrency: inFlight ?? workers, close: () => engine.close() };
}

async function run(args: readonly string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'pairs') {
    const controller = new AbortController();
    const onSignal = (): void => {
      io.err('Stopping after the current step; run the same command to continue.\n');
      controller.abort();
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      const r = await pairs(rest, io, controller.signal);
      io.out(`${r.manifestPath}: ${r.kept} kept, ${r.dropped} dropped, ${r.failed} failed of ${r.total} (${r.made} made now, ${r.reused} done before)${r.interrupted ? '; interrupted' : ''}\n`);
      return r.interrupted ? 130 : 0;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  }
  if (sub === 'register') {
    const { values, positionals } = parseFlags(rest, { models: { type: 'string' } }, true);
    const runDir = positionals[0];
    if (runDir === undefined || positionals.length > 1) throw new P2pzError('E_BAD_REQUEST', 'Give exactly one run folder.', 'p2pz distill register RUN [--models DIR]');
    const modelsDir = resolve(values.models ?? homePaths(defaultHome(io.env)).models);
    const r = await registerGenerator(resolve(runDir), modelsDir);
    const check = r.maxAbsDiff === null ? 'no PyTorch check pair' : `max |ONNX − PyTorch| ${r.maxAbsDiff.toExponential(1)}`;
    io.out(`${r.replaced ? 'replaced' : 'installed'} gan/${r.name}: ${r.meta.source} → ${r.meta.target}, working size ${r.meta.size} (${check}; ${r.checked.width}×${r.checked.height} checked)\n`);
    return 0;
  }
  throw new P2pzError('E_BAD_REQUEST', sub === undefined ? 'Name a distill step: pairs or register.' : `Unknown distill step "${sub.slice(0, 20)}".`, 'Run `p2pz distill --help`.');
}

export const distillCommand: CliCommand = {
  name: 'distill',
  summary: 'distil an edit direction into a quick-preview generator: distill pairs | register',
  usage: USAGE,
  run,
};
