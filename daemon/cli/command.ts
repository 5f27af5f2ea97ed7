// The shape of a `p2pz` subcommand. Each command lives in its own file in daemon/cli/ and is listed
// in commands.ts; cli.ts only dispatches. Commands write through `io` (so tests can capture output)
// and return an exit code; a thrown P2pzError is printed as its message and hint.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { P2pzError, type ErrorCode } from '../../shared/protocol/index.js';

export interface CliIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Whether `err` writes to a terminal (progress lines are redrawn there, plain elsewhere). */
  readonly errIsTTY?: boolean;
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

/** An error about a path the user typed. cli.ts prints it as written: the log scrubber, which hides
 *  the daemon's own paths, would turn the user's file name into "<path>". */
export class UserPathError extends P2pzError {
  constructor(code: ErrorCode, message: string, hint?: string) {
    super(code, undefined, hint);
    this.message = message;
  }
}

/** node:util parseArgs errors in our words. Its own unknown-option text ends in an unbalanced quote
 *  (`as in '-- "--foo"`, Node 20.20), so the option is taken from the first quoted word instead. */
function flagError(err: unknown): P2pzError {
  const { code, message } = err as { code?: unknown; message: string };
  const quoted = /'([^']{1,60})'/.exec(message)?.[1] ?? '';
  const hint = 'Run `p2pz <command> --help` for its options.';
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    return new P2pzError('E_BAD_REQUEST', `Unknown option ${quoted}.`, `${hint} A value that starts with "-" goes after "--".`);
  }
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') return new P2pzError('E_BAD_REQUEST', `Unexpected argument "${quoted}".`, hint);
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && /argument missing/.test(message)) {
    return new P2pzError('E_BAD_REQUEST', `${quoted.split(' ')[0]} needs a value (${quoted}).`, hint);
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && /does not take an argument/.test(message)) {
    return new P2pzError('E_BAD_REQUEST', `${quoted} takes no value.`, hint);
  }
  return new P2pzError('E_BAD_REQUEST', 'The options could not be read.', hint);
}

/** Parses a command's flags strictly; unknown flags and missing values are E_BAD_REQUEST. */
export function parseFlags<O extends Options>(args: readonly string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args: [...args], options, strict: true, allowPositionals });
  } catch (err) {
    throw flagError(err);
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
