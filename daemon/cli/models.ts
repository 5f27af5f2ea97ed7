// `p2pz models list|install|verify|remove|prepare`: the installed models in the data directory's
// `models/` folder. `install` fetches a Stable Diffusion 1.x ONNX export or a captioner from the
// Hugging Face hub (default: SD v1.4, the paper's base model) or copies a local folder, verified,
// resumable and atomic (daemon/models/install.ts); `prepare` is the command of models-prepare.ts.
import { P2pzError } from '../../shared/protocol/index.js';
import { defaultHome, homePaths } from '../config.js';
import { MODELS_DEFAULTS } from '../models/defaults.js';
import { removeDemoPack } from '../models/demo-pack.js';
import { HubClient, hubTokenFrom, hubUrlFrom } from '../models/hub-client.js';
import { installFromFolder, installFromHub, type InstallEvents, type InstallResult } from '../models/install.js';
import { CAPTIONER_FILES } from '../models/captioner-files.js';
import { formatBytes, formatProgress, ProgressMeter, PROGRESS_DEFAULTS } from '../models/progress.js';
import { listModels, listUnfinished, removeModel, type RegistryEntry } from '../models/registry.js';
import { verifyModel } from '../models/verify.js';
import { intFlag, parseFlags, type CliCommand, type CliIo } from './command.js';
import { modelsPrepareCommand } from './models-prepare.js';

const USAGE = `p2pz models <list|install|verify|remove|prepare> [options]

  list [--json]                 the installed models (diffusion folders, GAN generators, captioners)
  install [ID] [options]        install a Stable Diffusion 1.x ONNX export from the Hugging Face hub;
                                default ${MODELS_DEFAULTS.repo} (revision "${MODELS_DEFAULTS.revision}"), as "${MODELS_DEFAULTS.name}".
                                Downloads resume where they stopped; every file is checked.
      --revision R              branch, tag or commit (other ids: default "main")
      --name N                  folder name in the models directory
      --size N | --no-prepare   prepare the derived graphs for N×N pixels (default ${MODELS_DEFAULTS.prepareSize}), or not
      --force                   install again even when up to date
      --hub-url URL             another hub (default ${MODELS_DEFAULTS.hubUrl}, or $${MODELS_DEFAULTS.hubUrlEnv})
      --captioner               install ID as an image-to-text captioner (under captioner/); a repository
                                with config.json and no model_index.json is taken for one anyway
  install --from DIR [--name N] copy a local model folder: a diffusers ONNX export, a distilled
                                preview generator (generator.onnx + meta.json, installed under gan/), or
                                a captioner (${CAPTIONER_FILES.layout};
                                installed under captioner/, see docs/CAPTIONER.md)
  verify [NAME...]              re-check sizes and hashes of installed models (all by default)
  remove NAME                   delete an installed model (NAME as \`list\` shows it)
  prepare DIR [--size N | --height H --width W] [--batch B] [--force]
                                derive the cross-attention and gradient graphs for one working size

Alternatives to the default: onnx-community/stable-diffusion-v1-5-ONNX (SD 1.5). Gated models need
HF_TOKEN. Models live in $P2PZ_HOME/models.`;

/** Redraws one progress line on the error stream (`\\r`), at most every `redrawMs`. */
class ProgressLine {
  readonly #io: CliIo;
  readonly #meter: ProgressMeter;
  #label = '';
  #lastDraw = -Infinity;
  #drawn = false;

  constructor(io: CliIo, total: number) {
    this.#io = io;
    this.#meter = new ProgressMeter(total);
  }

  get events(): Pick<InstallEvents, 'file' | 'bytes' | 'resumed' | 'notice'> {
    return {
      file: (path) => {
        this.#label = path;
        this.draw(true);
      },
      bytes: (delta) => {
        this.#meter.add(delta);
        this.draw(false);
      },
      resumed: (bytes) => {
        this.#meter.addResumed(bytes);
        this.draw(false);
      },
      notice: (text) => {
        this.end();
        this.#io.err(`${text}\n`);
      },
    };
  }

  draw(force: boolean): void {
    const now = performance.now();
    if (!force && now - this.#lastDraw < PROGRESS_DEFAULTS.redrawMs) return;
    this.#lastDraw = now;
    this.#drawn = true;
    this.#io.err(`\r${formatProgress(this.#meter.snapshot(), this.#label)}\x1b[K`);
  }

  end(): void {
    if (!this.#drawn) return;
    this.draw(true);
    this.#io.err('\n');
    this.#drawn = false;
  }
}

function modelsDir(io: CliIo): string {
  return homePaths(defaultHome(io.env)).models;
}

function describeSource(e: RegistryEntry): string {
  const s = e.source;
  if (!s) return 'placed by hand';
  if (s.kind === 'hub') return `${s.repo}@${s.revision} (${s.commit.slice(0, 10)})`;
  if (s.kind === 'folder') return 'copied from a folder';
  return 'generated demo (random weights)';
}

async function list(args: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseFlags(args, { json: { type: 'boolean' } });
  const dir = modelsDir(io);
  const models = await listModels(dir);
  const unfinished = await listUnfinished(dir);
  if (values.json) {
    io.out(`${JSON.stringify(models, null, 2)}\n`);
    return 0;
  }
  if (unfinished.length > 0) {
    const names = unfinished.map((u) => `${u.name} (${formatBytes(u.bytes)} so far)`).join(', ');
    io.out(`Unfinished downloads: ${names}. Run the same \`p2pz models install\` command to resume.\n`);
  }
  if (models.length === 0) {
    io.out(`No models installed. Install the default one with:\n  ${MODELS_DEFAULTS.installCommand}\n`);
    return 0;
  }
  const width = Math.max(...models.map((m) => m.name.length));
  for (const m of models) {
    const flags = [m.demo ? 'demo' : '', m.prepared.length ? `prepared ${m.prepared.join(', ')}` : '', m.problems.length ? `${m.problems.length} problem(s): run \`p2pz models verify ${m.name}\`` : '']
      .filter(Boolean)
      .join('; ');
    io.out(`${m.name.padEnd(width)}  ${m.kind.padEnd(9)}  ${formatBytes(m.bytes).padStart(8)}  ${describeSource(m)}${flags ? `  [${flags}]` : ''}\n`);
  }
  return 0;
}

async function install(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseFlags(
    args,
    {
      revision: { type: 'string' },
      name: { type: 'string' },
      from: { type: 'string' },
      'hub-url': { type: 'string' },
      size: { type: 'string' },
      'no-prepare': { type: 'boolean' },
      force: { type: 'boolean' },
      captioner: { type: 'boolean' },
    },
    true,
  );
  if (positionals.length > 1) throw new P2pzError('E_BAD_REQUEST', 'Give at most one model id.', 'p2pz models install [ID] [--revision R]');
  if (values.from !== undefined && positionals.length > 0) throw new P2pzError('E_BAD_REQUEST', 'Give a model id or --from DIR, not both.');
  // The default repository is Stable Diffusion; no official ONNX export of BLIP is on the hub.
  if (values.captioner === true && values.from === undefined && positionals.length === 0) {
    throw new P2pzError('E_BAD_REQUEST', 'Name the hub repository of a captioner export.', 'p2pz models install OWNER/NAME --captioner, or p2pz models install --from DIR for a local export (docs/CAPTIONER.md).');
  }
  const size = values['no-prepare'] ? 0 : (intFlag('size', values.size, 64, 2048) ?? MODELS_DEFAULTS.prepareSize);
  if (size % 64 !== 0) throw new P2pzError('E_BAD_REQUEST', '--size must be a multiple of 64.');
  const dir = modelsDir(io);
  let progress: ProgressLine | undefined;
  const events: InstallEvents = {
    start: (files, total) => {
      io.err(`Fetching ${files.length} files, ${formatBytes(total)}.\n`);
      progress = new ProgressLine(io, total);
    },
    file: (p) => progress?.events.file?.(p),
    bytes: (d) => progress?.events.bytes?.(d),
    resumed: (b) => progress?.events.resumed?.(b),
    notice: (t) => (progress ? progress.events.notice?.(t) : io.err(`${t}\n`)),
    phase: (phase) => {
      if (phase === 'prepare') {
        progress?.end();
        io.err(`Preparing the derived graphs for ${size}×${size}…\n`);
      }
    },
  };
  const common = {
    modelsDir: dir,
    ...(values.name === undefined ? {} : { name: values.name }),
    prepareSize: size,
    force: values.force === true,
    ...(values.captioner === true ? { captioner: true } : {}),
    events,
  };
  let result: InstallResult;
  try {
    if (values.from !== undefined) {
      result = await installFromFolder({ ...common, folder: values.from });
    } else {
      const client = new HubClient({ baseUrl: hubUrlFrom(io.env, values['hub-url']), ...tokenOption(io) });
      const repo = positionals[0];
      result = await installFromHub({
        ...common,
        client,
        ...(repo === undefined ? {} : { repo }),
        ...(values.revision === undefined ? {} : { revision: values.revision }),
      });
    }
  } finally {
    progress?.end();
  }
  if (result.upToDate) {
    io.out(`${result.name} is installed and up to date (use --force to install it again).\n`);
    return 0;
  }
  // A real diffusion model replaces the demo pack (a preview generator alone does not).
  const removed = result.manifest.kind === 'diffusion' ? await removeDemoPack(dir) : [];
  const source = result.manifest.source;
  const from = source.kind === 'hub' ? `${source.repo}@${source.revision}, commit ${source.commit.slice(0, 10)}` : 'a local folder';
  const bytes = result.manifest.files.reduce((s, f) => s + f.size, 0);
  io.out(`Installed ${result.name} from ${from}: ${result.manifest.files.length} files, ${formatBytes(bytes)}, verified${size > 0 && result.manifest.kind === 'diffusion' ? `, prepared for ${size}×${size}` : ''}.\n`);
  if (removed.length > 0) io.out(`Removed the demo pack (${removed.join(', ')}).\n`);
  if (result.manifest.kind === 'captioner') io.out('`p2pz caption IMAGE`, and edits without a caption, now caption with an installed captioner (docs/CAPTIONER.md).\n');
  return 0;
}

function tokenOption(io: CliIo): { token?: string } {
  const token = hubTokenFrom(io.env);
  return token === undefined ? {} : { token };
}

async function verify(args: readonly string[], io: CliIo): Promise<number> {
  const { positionals } = parseFlags(args, {}, true);
  const dir = modelsDir(io);
  const names = positionals.length > 0 ? positionals : (await listModels(dir)).map((m) => m.name);
  if (names.length === 0) {
    io.out(`No models installed. Install the default one with:\n  ${MODELS_DEFAULTS.installCommand}\n`);
    return 0;
  }
  let failed = 0;
  for (const name of names) {
    const r = await verifyModel(dir, name);
    if (r.ok) {
      io.out(`ok      ${name}: ${r.checkedFiles} files, ${formatBytes(r.checkedBytes)} checked\n`);
    } else {
      failed++;
      io.out(`FAILED  ${name}:\n${r.problems.map((p) => `  - ${p}\n`).join('')}`);
    }
    if (r.unrecorded.length > 0) io.out(`  not part of the install: ${r.unrecorded.slice(0, 10).join(', ')}${r.unrecorded.length > 10 ? '…' : ''}\n`);
  }
  if (failed > 0) io.err(`${failed} model(s) failed verification: remove and install them again (\`p2pz models remove NAME\`, then \`p2pz models install …\`).\n`);
  return failed > 0 ? 1 : 0;
}

async function remove(args: readonly string[], io: CliIo): Promise<number> {
  const { positionals } = parseFlags(args, {}, true);
  if (positionals.length !== 1) throw new P2pzError('E_BAD_REQUEST', 'Name one model to remove.', 'p2pz models remove NAME (as `p2pz models list` shows it)');
  const name = positionals[0] as string;
  await removeModel(modelsDir(io), name);
  io.out(`Removed ${name}.\n`);
  return 0;
}

const SUBCOMMANDS: Record<string, (args: readonly string[], io: CliIo) => Promise<number>> = {
  list,
  install,
  verify,
  remove,
  // models-prepare.ts writes lines without their newline.
  prepare: (args, io) => modelsPrepareCommand.run(args, { ...io, out: (t) => io.out(t.endsWith('\n') ? t : `${t}\n`), err: (t) => io.err(t.endsWith('\n') ? t : `${t}\n`) }),
};

export const modelsCommand: CliCommand = {
  name: 'models',
  summary: 'list, install, verify, remove or prepare models',
  usage: USAGE,
  async run(args, io) {
    const [sub, ...rest] = args;
    const run = sub === undefined ? undefined : SUBCOMMANDS[sub];
    if (run === undefined) {
      io.err(`${USAGE}\n`);
      return 2;
    }
    return run(rest, io);
  },
};
