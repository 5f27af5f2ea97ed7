// The team's public host name (`p2pz serve --public-host p2pz.studio.example[:PORT]`; docs/TEAM.md):
// the name designers' plugins use to reach a daemon that listens beyond this machine, directly over
// TLS or behind a reverse proxy. It adds to the Host allowlist (docs/SECURITY.md §R2) and the Origin allowlist (docs/SECURITY.md §R5)
// exactly what that name produces, always over https:
// - Host: `NAME` and `NAME:443` (a browser omits the default port, a proxy may forward either), or
//   `NAME:PORT` when a port is named; and `NAME:<daemon port>` for clients that reach the daemon's own
//   TLS port under that name.
// - Origin: `https://NAME` (or `https://NAME:PORT`), and `https://NAME:<daemon port>` (the daemon's own
//   pages served over TLS under that name).
import { isIP } from 'node:net';
import { P2pzError } from '../../shared/protocol/index.js';

export interface PublicHost {
  /** Lowercase DNS name or IPv4 address (an IPv6 literal is bracketed). */
  readonly name: string;
  /** The public https port, when not 443. */
  readonly port?: number;
}

/** A DNS name: dot-separated labels of letters, digits and inner hyphens (RFC 1123), at most 253. */
const DNS_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** Parses `NAME[:PORT]` (or `[IPv6][:PORT]`); refuses anything else with E_BAD_REQUEST. */
export function parsePublicHost(value: string): PublicHost {
  const v = value.trim().toLowerCase();
  const m = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(v);
  const name = m?.[1];
  const ok = name !== undefined && (name.startsWith('[') ? isIP(name.slice(1, -1)) === 6 : isIP(name) === 4 || DNS_NAME.test(name));
  const port = m?.[2] === undefined ? undefined : Number(m[2]);
  if (!ok || (port !== undefined && (port < 1 || port > 65535))) {
    throw new P2pzError('E_BAD_REQUEST', `--public-host must be a host name with an optional port, such as p2pz.studio.example or p2pz.studio.example:8443, not "${value.slice(0, 100)}".`, 'Name the host designers use in the browser, without https:// and without a path.');
  }
  return port === undefined || port === 443 ? { name } : { name, port };
}

/** Host header values the public names produce, for a daemon on `daemonPort`. */
export function publicHostValues(hosts: readonly PublicHost[], daemonPort: number): string[] {
  return hosts.flatMap((h) => (h.port === undefined ? [h.name, `${h.name}:443`] : [`${h.name}:${h.port}`]).concat(`${h.name}:${daemonPort}`));
}

/** Origin values the public names produce (https only), for a daemon on `daemonPort`. */
export function publicOrigins(hosts: readonly PublicHost[], daemonPort: number): string[] {
  return hosts.flatMap((h) => [h.port === undefined ? `https://${h.name}` : `https://${h.name}:${h.port}`, `https://${h.name}:${daemonPort}`]);
}
