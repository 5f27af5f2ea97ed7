// `p2pz pair`: asks the running daemon for a fresh pairing code (POST /v1/pairing-code with the CLI
// token) and prints it. The daemon is found through $P2PZ_HOME/daemon.json.
import { readFile } from 'node:fs/promises';
import { ErrorResponse, P2pzError, PairingCodeResponse, PROTOCOL_VERSION } from '../../shared/protocol/index.js';
import { DaemonInfo, defaultHome, homePaths } from '../config.js';
import { readCliToken } from '../server/tokens.js';
import { parseFlags, type CliCommand } from './command.js';
import { daemonFetch, type DaemonExchange } from './daemon-fetch.js';

export const PAIR_DEFAULTS = Object.freeze({
  /** How long to wait for the daemon's answer. */
  timeoutMs: 5_000,
});

const notRunning = (): P2pzError =>
  new P2pzError('E_NOT_FOUND', 'The p2pz daemon is not running.', 'Start it with `p2pz serve` (it prints a pairing code itself).');

export const pairCommand: CliCommand = {
  name: 'pair',
  summary: 'print a fresh pairing code from the running daemon',
  usage: 'p2pz pair\n\nAsks the running daemon for a new pairing code (8 letters and digits, like 7K3Q-MXR9; valid 5 minutes,\nsingle use) to type in the plugin. Case, hyphens and spaces do not matter.',
  async run(args, io) {
    parseFlags(args, {});
    const paths = homePaths(defaultHome(io.env));
    let info: DaemonInfo;
    try {
      const parsed = DaemonInfo.safeParse(JSON.parse(await readFile(paths.daemonInfo, 'utf8')));
      if (!parsed.success) throw notRunning();
      info = parsed.data;
    } catch {
      throw notRunning();
    }
    const token = await readCliToken(paths.cliToken);
    if (token === undefined) throw notRunning();
    let answer: DaemonExchange;
    try {
      answer = await daemonFetch(info, '/v1/pairing-code', {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ v: PROTOCOL_VERSION }),
        timeoutMs: PAIR_DEFAULTS.timeoutMs,
      });
    } catch {
      throw notRunning();
    }
    const body = answer.body;
    if (answer.status < 200 || answer.status > 299) {
      const error = ErrorResponse.safeParse(body);
      throw error.success ? P2pzError.fromBody(error.data) : new P2pzError('E_INTERNAL');
    }
    const parsed = PairingCodeResponse.safeParse(body);
    if (!parsed.success) throw new P2pzError('E_PROTOCOL_VERSION');
    const minutes = Math.max(1, Math.round((parsed.data.expiresAt - Date.now()) / 60_000));
    io.out(`Pairing code: ${parsed.data.code} (type it in the plugin within ${minutes} minutes; it works once)\n`);
    return 0;
  },
};
