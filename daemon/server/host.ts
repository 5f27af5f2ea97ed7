// The Host allowlist (R2): a request must name this daemon by a loopback name and its own port. A web
// page that rebinds its own DNS name to 127.0.0.1 still sends its own name in Host, so it is refused.
import { P2pzError } from '../../shared/protocol/index.js';

/** Names a local client may use; each is accepted only together with the daemon's port. */
export const LOOPBACK_NAMES = Object.freeze(['localhost', '127.0.0.1', '[::1]']);

/** Every accepted `Host` value (lowercase) for `port`, plus `extraNames` (a remote bind address). */
export function allowedHosts(port: number, extraNames: readonly string[] = []): ReadonlySet<string> {
  const names = [...LOOPBACK_NAMES, ...extraNames.map((n) => n.toLowerCase())];
  const hosts = new Set(names.map((n) => `${n}:${port}`));
  // Browsers omit the default port from Host.
  if (port === 80) for (const n of names) hosts.add(n);
  return hosts;
}

/** Throws E_FORBIDDEN_HOST unless `host` is in the allowlist. */
export function checkHost(host: string | undefined, allowed: ReadonlySet<string>): void {
  if (host === undefined || !allowed.has(host.toLowerCase())) throw new P2pzError('E_FORBIDDEN_HOST');
}
