// The `p2pz` command line (bin/p2pz.js runs the bundle of this file): finds the subcommand in
// cli/commands.ts and runs it. Errors are printed as their message and hint, never as a stack.
import { ERRORS, P2pzError } from '../shared/protocol/index.js';
import { DAEMON_VERSION } from './config.js';
import { loadCommand, loadCommands } from './cli/commands.js';
import { UserPathError, type CliCommand, type CliIo } from './cli/command.js';
import { describeError, scrub } from './log.js';

export function helpText(commands: readonly CliCommand[]): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    `p2pz ${DAEMON_VERSION}: zero-shot image-to-image translation (pix2pix-zero) for design tools`,
    '',
    'Usage: p2pz <command> [options]',
    '',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Run `p2pz <command> --help` for a command\'s options.',
  ].join('\n');
}

/** An error's message for the terminal. A P2pzError's message is its code's general sentence, written
 *  for a designer in a plugin ("The request is not valid."), plus the specific detail; on the command
 *  line the detail alone says what happened. Paths are scrubbed except those the user typed. */
export function cliMessage(err: P2pzError): string {
  const general = `${ERRORS[err.code].message} `;
  const text = err.message.startsWith(general) ? err.message.slice(general.length) : err.message;
  return err instanceof UserPathError ? text : scrub(text);
}

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.out(`${helpText(await loadCommands())}\n`);
    return name === undefined ? 1 : 0;
  }
  if (name === '--version') {
    io.out(`${DAEMON_VERSION}\n`);
    return 0;
  }
  const command = await loadCommand(name);
  if (command === undefined) {
    io.err(`Unknown command "${scrub(name).slice(0, 40)}".\n\n${helpText(await loadCommands())}\n`);
    return 2;
  }
  if (args.includes('--help') || args.includes('-h')) {
    io.out(`${command.usage}\n`);
    return 0;
  }
  try {
    return await command.run(args, io);
  } catch (err) {
    if (err instanceof P2pzError) io.err(`${cliMessage(err)}\n${err.hint.replace('p2pz <command>', `p2pz ${name}`)}\n`);
    else io.err(`p2pz ${name} failed (${describeError(err).error}).\n`);
    return 1;
  }
}

const io: CliIo = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  env: process.env,
  errIsTTY: process.stderr.isTTY === true,
};
process.exitCode = await main(process.argv.slice(2), io);
