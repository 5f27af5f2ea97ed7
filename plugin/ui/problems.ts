// What the panel says when something stands in the way, always with the fix: the daemon is not
// running (the start command), the browser blocks local network access (how to allow it), the plugin
// is not paired (the code), a model is missing (the install command), or any daemon error (its
// message and hint). Commands inside a hint's backticks are shown as copyable code.
import { P2pzError } from '../../shared/protocol/errors.js';
import { DaemonUnreachable } from './daemon-client.js';
import { isLocalEndpoint } from './endpoint.js';

export const START_COMMAND = 'npm start';
export const SERVE_COMMAND = 'p2pz serve';

export interface Problem {
  readonly title: string;
  readonly hint: string;
  /** A command to run in a terminal, shown as code. */
  readonly command: string | null;
  /** Extra advice (e.g. the browser permission). */
  readonly note: string | null;
  /** Pairing fixes it: show the pairing form. */
  readonly pair: boolean;
}

/** What the pairing field holds cannot be a code (it is checked before anything is sent). */
export const NOT_A_PAIRING_CODE: Problem = Object.freeze({
  title: 'That is not a pairing code.',
  hint: 'A code has 8 letters and digits, like 7K3Q-MXR9, as the daemon printed it; case and hyphens do not matter. For a new one run:',
  command: 'p2pz pair',
  note: null,
  pair: true,
});

/** The browser's answer about local network access: Chrome's permission (named
 *  'local-network-access', formerly 'loopback-network'); 'unknown' where it does not exist. */
export type LocalNetworkPermission = 'granted' | 'denied' | 'prompt' | 'unknown';

export async function localNetworkPermission(nav: Navigator = navigator): Promise<LocalNetworkPermission> {
  for (const name of ['local-network-access', 'loopback-network']) {
    try {
      const status = await nav.permissions.query({ name: name as PermissionName });
      return status.state;
    } catch {
      // not a permission this browser knows
    }
  }
  return 'unknown';
}

/** The first `backticked` command in a hint. */
export function commandIn(hint: string): string | null {
  const match = /`([^`]+)`/.exec(hint);
  return match?.[1] ?? null;
}

/**
 * The daemon did not answer. From inside the plugin's iframe (an opaque `null` origin) the browser's
 * answer about the local-network permission is not about figma.com, so it cannot tell a blocked
 * request from a stopped daemon: the panel gives the start command and says how to allow the
 * permission, worded for a browser that is asking ('prompt') or one that may have been told no.
 */
export function unreachableProblem(port: number, permission: LocalNetworkPermission): Problem {
  return {
    title: `The p2pz daemon is not running on port ${port}.`,
    hint: `Start it in the p2pz folder with the command below (or run ${SERVE_COMMAND}), then try again.`,
    command: START_COMMAND,
    note:
      permission === 'prompt'
        ? 'If your browser asks to let Figma reach apps on this device, choose Allow.'
        : 'Figma in a browser: if the daemon is running, allow “Local network access” for figma.com (site settings, left of the address bar) and reopen the plugin. The desktop app needs nothing.',
    pair: false,
  };
}

/** A team endpoint did not answer: the start command is no help here; the address or Figma's
 *  networkAccess list may be wrong, or the endpoint is down. */
export function endpointUnreachableProblem(url: string): Problem {
  return {
    title: `The p2pz endpoint ${url} did not answer.`,
    hint: 'Check the address under “Daemon”, and ask whoever runs the endpoint whether it is up. In Figma, the plugin reaches only the hosts its manifest.json names (networkAccess).',
    command: null,
    note: null,
    pair: false,
  };
}

export function problemFor(err: unknown, port: number, permission: LocalNetworkPermission = 'unknown'): Problem {
  if (err instanceof DaemonUnreachable) return isLocalEndpoint(err.url) ? unreachableProblem(port, permission) : endpointUnreachableProblem(err.url);
  if (err instanceof P2pzError) {
    const pair = err.code === 'E_UNAUTHORIZED' || err.code === 'E_PAIRING_INVALID';
    let command = commandIn(err.hint);
    if (err.code === 'E_MODEL_MISSING' && command === null) command = 'p2pz models install';
    return { title: err.message, hint: err.hint.replace(/`/g, ''), command, note: null, pair };
  }
  const text = err instanceof Error && err.message ? err.message : 'Something went wrong.';
  return { title: text, hint: 'Try again.', command: null, note: null, pair: false };
}
