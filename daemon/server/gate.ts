// The gate: one middleware in front of every HTTP route, and the same Host/Origin checks in front of
// every WebSocket upgrade. In order: Host allowlist (docs/SECURITY.md §R2), Origin allowlist (docs/SECURITY.md §R5), CORS preflight (docs/SECURITY.md §R6),
// bearer token except for health and pairing (docs/SECURITY.md §R3), then body headers: content type (docs/SECURITY.md §R7), encoding and
// declared length (docs/SECURITY.md §R8). Whatever fails is answered here as `{v, code, message, hint}`; a route only
// ever sees requests that passed.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { P2pzError } from '../../shared/protocol/index.js';
import { authenticate, setPrincipal } from './auth.js';
import { bodyKind, checkDeclaredLength, type BodyLimits } from './body.js';
import { allowedHosts, checkHost, singleHost } from './host.js';
import { allowedOrigins, answerPreflight, applyCors, checkOrigin, requestOrigin } from './origin.js';
import { publicHostValues, publicOrigins, type PublicHost } from './public-host.js';
import { sendError, setCommonHeaders, toP2pzError } from './respond.js';
import type { Principal, TokenStore } from './tokens.js';

/** Routes open without a token: `METHOD path`, compared exactly (routing is case- and slash-strict).
 *  Besides health and pairing, the two static pages (routes/pages.ts), whose API calls need a token. */
export const PUBLIC_ROUTES: ReadonlySet<string> = new Set(['GET /v1/health', 'HEAD /v1/health', 'POST /v1/pair', 'GET /', 'HEAD /', 'GET /photopea', 'HEAD /photopea']);

/** A team's GPU worker token (docs/TEAM.md) reaches the `/v1/team/` routes and health only: it can
 *  neither submit jobs nor read anyone's uploads or results. */
function confine(principal: Principal, path: string): Principal {
  if (principal.kind === 'worker' && !path.startsWith('/v1/team/') && path !== '/v1/health') {
    throw new P2pzError('E_UNAUTHORIZED', 'A GPU worker token cannot be used for this.', 'Pair the plugin, or use your own token (`p2pz tokens create NAME`).');
  }
  return principal;
}

export interface GateOptions {
  /** The port the daemon listens on (known only once it listens). */
  readonly port: () => number;
  /** Host names besides loopback that may address the daemon (its remote bind address). */
  readonly extraHostNames: readonly string[];
  readonly tokens: TokenStore;
  readonly limits: BodyLimits;
  /** When listening beyond loopback, health needs a token as well. */
  readonly healthNeedsToken: boolean;
  /** The team's public names (`--public-host`): more Host values and https origins. */
  readonly publicHosts?: readonly PublicHost[];
  /** The scheme the daemon itself serves (https with --tls-cert): its own pages' origins use it. */
  readonly scheme?: 'http' | 'https';
}

export interface Gate {
  /** Express-compatible middleware. */
  readonly http: (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;
  /** Host and Origin checks for a WebSocket upgrade; throws a P2pzError. */
  readonly checkUpgrade: (req: IncomingMessage) => void;
}

function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

export function createGate(options: GateOptions): Gate {
  let cache: { port: number; hosts: ReadonlySet<string>; origins: ReadonlySet<string> } | undefined;
  const lists = (): { hosts: ReadonlySet<string>; origins: ReadonlySet<string> } => {
    const port = options.port();
    if (cache?.port !== port) {
      const publicHosts = options.publicHosts ?? [];
      cache = {
        port,
        hosts: allowedHosts(port, options.extraHostNames, publicHostValues(publicHosts, port)),
        origins: allowedOrigins(port, options.extraHostNames, options.scheme, publicOrigins(publicHosts, port)),
      };
    }
    return cache;
  };

  const isPublic = (req: IncomingMessage): boolean => {
    const route = `${req.method ?? ''} ${pathOf(req)}`;
    if (!PUBLIC_ROUTES.has(route)) return false;
    return !(options.healthNeedsToken && route.endsWith('/v1/health'));
  };

  const http: Gate['http'] = (req, res, next) => {
    try {
      setCommonHeaders(res);
      const { hosts, origins } = lists();
      checkHost(singleHost(req), hosts);
      const origin = requestOrigin(req);
      checkOrigin(origin, origins);
      applyCors(res, origin);
      if (req.method === 'OPTIONS') {
        answerPreflight(req, res, origin);
        return;
      }
      if (!isPublic(req)) setPrincipal(res, confine(authenticate(req, options.tokens), pathOf(req)));
      checkDeclaredLength(req, bodyKind(req), options.limits);
    } catch (err) {
      sendError(req, res, toP2pzError(err));
      return;
    }
    next();
  };

  const checkUpgrade = (req: IncomingMessage): void => {
    const { hosts, origins } = lists();
    checkHost(singleHost(req), hosts);
    checkOrigin(requestOrigin(req), origins);
  };

  return { http, checkUpgrade };
}
