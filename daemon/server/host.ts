// The Host allowlist (docs/SECURITY.md §R2): a request must name this daemon by a loopback name and its own port. A web
// page that rebinds its own DNS name to 127.0.0.1 still sends its own name in Host, so it is refused.
// A request has exactly one Host (RFC 9112 §3.2: more than one is a 400). Node's parser keeps only the
// first of several in `req.headers.host`, so the count comes from `rawHeaders`. docs/SECURITY.md §R2.
import type { IncomingMessage } from 'node:http';
import { P2pzError } from '../../shared/protocol/index.js';

/** Names a local client may use; each is accepted only together with the daemon's port. */
export const LOOPBACK_NAMES = Object.freeze(['localhost', '127.0.0.1', '[::1]']);

/** Every accepted `Host` value (lowercase) for `port`, plus `extraNames` (a remote bind address) and
 *  `extraValues` (complete `host[:port]` values: the team's public name, public-host.ts). */
export function allowedHosts(port: number, extraNames: readonly string[] = [], extraValues: readonly string[] = []): ReadonlySet<string> {
  const names = [...LOOPBACK_NAMES, ...extraNames.map((n) => n.toLowerCase())];
  const hosts = new Set([...names.map((n) => `${n}:${port}`), ...extraValues.map((v) => v.toLowerCase())]);
  // Browsers omit the default port from Host.
  if (port === 80) for (const n of names) hosts.add(n);
  return hosts;
}

/** Throws E_FORBIDDEN_HOST unless `host` is in the allowlist. */
export function checkHost(host: string | undefined, allowed: ReadonlySet<string>): void {
  if (host === undefined || !allowed.has(host.toLowerCase())) throw new P2pzError('E_FORBIDDEN_HOST');
}

/** The request's one Host value; E_BAD_REQUEST when it carries more than one Host header. */
export function singleHost(req: IncomingMessage): string | undefined {
  const raw = req.rawHeaders;
  let count = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]?.toLowerCase() === 'host') count += 1;
  if (count > 1) throw new P2pzError('E_BAD_REQUEST', 'The request has more than one Host header.');
  return req.headers.host;
}
