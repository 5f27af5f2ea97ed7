// `p2pz token`: prints the CLI token (created on first use), for scripts that call the HTTP API.
import { mkdir } from 'node:fs/promises';
import { defaultHome, homePaths } from '../config.js';
import { TokenStore } from '../server/tokens.js';
import { parseFlags, type CliCommand } from './command.js';

export const tokenCommand: CliCommand = {
  name: 'token',
  summary: 'print the command-line token (send it as `Authorization: Bearer <token>`)',
  usage: 'p2pz token\n\nPrints the token kept in $P2PZ_HOME/token (mode 0600), creating it on first use.',
  async run(args, io) {
    parseFlags(args, {});
    const paths = homePaths(defaultHome(io.env));
    await mkdir(paths.home, { recursive: true, mode: 0o700 });
    const store = await TokenStore.open(paths);
    io.out(`${store.cliToken()}\n`);
    return 0;
  },
};
