// The CLI's main() run in this process, for tests that drive `p2pz …` without spawning a node: the
// test gives each call its own CliIo (output captured, P2PZ_HOME and friends in `env`).
import type { CliIo } from '../../daemon/cli/command.js';

export type Main = (argv: readonly string[], io: CliIo) => Promise<number>;

/** daemon/cli.ts runs main() on import with process.argv; import it once with a harmless argv. */
export async function loadMain(): Promise<Main> {
  const argv = process.argv;
  const write = process.stdout.write;
  process.argv = [argv[0]!, 'p2pz', '--version'];
  process.stdout.write = (() => true) as typeof process.stdout.write;
  try {
    return (await import('../../daemon/cli.js')).main;
  } finally {
    process.argv = argv;
    process.stdout.write = write;
    process.exitCode = undefined;
  }
}
