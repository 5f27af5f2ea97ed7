// The `p2pz` subcommands, in the order `p2pz --help` lists them. Add a command by writing its file
// in this folder and listing its loader here. Commands load on demand: `p2pz serve` must not load
// onnxruntime or sharp into the daemon process (they belong to the worker, docs/SECURITY.md §R16), while `edit` needs
// both in-process.
import type { CliCommand } from './command.js';

export const COMMAND_LOADERS: Readonly<Record<string, () => Promise<CliCommand>>> = Object.freeze({
  serve: async () => (await import('./serve.js')).serveCommand,
  edit: async () => (await import('./edit.js')).editCommand,
  caption: async () => (await import('./caption.js')).captionCommand,
  models: async () => (await import('./models.js')).modelsCommand,
  directions: async () => (await import('./directions.js')).directionsCommand,
  distill: async () => (await import('./distill.js')).distillCommand,
  pair: async () => (await import('./pair.js')).pairCommand,
  token: async () => (await import('./token.js')).tokenCommand,
  tokens: async () => (await import('./tokens.js')).tokensCommand,
  worker: async () => (await import('./worker.js')).workerCommand,
  doctor: async () => (await import('./doctor.js')).doctorCommand,
});

/** Every command, loaded (for `p2pz --help`). */
export function loadCommands(): Promise<CliCommand[]> {
  return Promise.all(Object.values(COMMAND_LOADERS).map((load) => load()));
}

/** One command by name, or undefined for an unknown name. */
export function loadCommand(name: string): Promise<CliCommand> | undefined {
  return Object.hasOwn(COMMAND_LOADERS, name) ? COMMAND_LOADERS[name]?.() : undefined;
}
