// The Origin allowlist and CORS (docs/SECURITY.md §R5, §R6). Allowed: `null` (Figma's plugin iframe), Photopea, and the
// daemon's own pages. No Origin header means a non-browser client (the CLI, curl): allowed, since a
// browser always sends Origin on cross-origin and state-changing requests. Any other origin is
// refused before authentication, even with a valid token. CORS never allows credentials: the only
// credential is the bearer token, which a page must hold explicitly.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CLIENT_HEADER, P2pzError, PHOTOPEA_ORIGIN } from '../../shared/protocol/index.js';
import { LOOPBACK_NAMES } from './host.js';

export const CORS_DEFAULTS = Object.freeze({
  /** Methods the routes use. */
  allowMethods: 'GET, POST, DELETE, OPTIONS',
  /** Request headers a page may send. */
  allowHeaders: `Authorization, Content-Type, ${CLIENT_HEADER}`,
  /** How long a browser may cache a preflight answer (seconds). */
  maxAgeSeconds: 600,
});

/** The allowed origins for a daemon listening on `port` (and reachable as `extraNames`), serving its
 *  pages over `scheme`; `extraOrigins` are complete origins (the team's public name, public-host.ts). */
export function allowedOrigins(port: number, extraNames: readonly string[] = [], scheme: 'http' | 'https' = 'http', extraOrigins: readonly string[] = []): ReadonlySet<string> {
  const own = [...LOOPBACK_NAMES, ...extraNames.map((n) => n.toLowerCase())].map((n) => `${scheme}://${n}:${port}`);
  return new Set(['null', PHOTOPEA_ORIGIN, ...own, ...extraOrigins]);
}

/** The request's Origin header, or undefined when absent. */
export function requestOrigin(req: IncomingMessage): string | undefined {
  const origin = req.headers.origin;
  return typeof origin === 'string' ? origin : undefined;
}

/** Throws E_FORBIDDEN_ORIGIN for a browser origin outside the allowlist. */
export function checkOrigin(origin: string | undefined, allowed: ReadonlySet<string>): void {
  if (origin !== undefined && !allowed.has(origin)) throw new P2pzError('E_FORBIDDEN_ORIGIN');
}

/** CORS headers for an answer to an allowed origin (no credentials, ever). */
export function applyCors(res: ServerResponse, origin: string | undefined): void {
  res.setHeader('Vary', 'Origin');
  if (origin === undefined) return;
  res.setHeader('Access-Control-Allow-Origin', origin);
}

/**
 * Answers an OPTIONS request from an allowed origin (or a non-browser client): 204 with the allowed
 * methods and headers. A page on a public site asking to reach this loopback daemon sends Chrome's
 * Private Network Access header (`Access-Control-Request-Private-Network: true`, now renamed Local
 * Network Access: `...-Local-Network`); the answer grants it only here, after the origin check.
 */
export function answerPreflight(req: IncomingMessage, res: ServerResponse, origin: string | undefined): void {
  applyCors(res, origin);
  res.setHeader('Access-Control-Allow-Methods', CORS_DEFAULTS.allowMethods);
  res.setHeader('Access-Control-Allow-Headers', CORS_DEFAULTS.allowHeaders);
  res.setHeader('Access-Control-Max-Age', String(CORS_DEFAULTS.maxAgeSeconds));
  if (req.headers['access-control-request-private-network'] === 'true') {
    res.setHeader('Access-Control-Allow-Private-Network', 'true');
  }
  if (req.headers['access-control-request-local-network'] === 'true') {
    res.setHeader('Access-Control-Allow-Local-Network', 'true');
  }
  res.setHeader('Allow', CORS_DEFAULTS.allowMethods);
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Length', '0');
  res.statusCode = 204;
  res.end();
}
