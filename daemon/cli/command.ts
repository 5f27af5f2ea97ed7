// The shape of a `p2pz` subcommand. Each command lives in its own file in daemon/cli/ and is listed
// in commands.ts; cli.ts only dispatches. Commands write through `io` (so tests can capture output)
// and return an exit code; a thrown P2pzError is printed as its message and hint.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { P2pzError } from '../../shared/protocol/index.js';

export interface CliIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
}

export interface CliCommand {
  readonly name: string;
  /** One line for `p2pz --help`. */
  readonly summary: string;
  /** Full usage for `p2pz <name> --help`. */
  readonly usage: string;
  run(args: readonly string[], io: CliIo): Promise<number>;
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** Parses a command's flags strictly; unknown flags and missing values are E_BAD_REQUEST. */
export function parseFlags<O extends Options>(args: readonly string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args: [...args], options, strict: true, allowPositionals });
  } catch (err) {
    throw new P2pzError('E_BAD_REQUEST', (err as Error).message.split('\n')[0]?.slice(0, 200), 'Run `p2pz --help` for the options.');
  }
}

/** A whole number in [min, max] from a flag value. */
export function intFlag(name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) {
    throw new P2pzError('E_BAD_REQUEST', `--${name} must be a whole number from ${min} to ${max}.`);
  }
  return n;
}
