// The bearer token check (docs/SECURITY.md §R3): `Authorization: Bearer <token>`, verified by the token store in
// constant time. Tokens are never read from URLs (they would end up in logs and browser history).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { P2pzError } from '../../shared/protocol/index.js';
import type { Principal, TokenStore } from './tokens.js';

/** The token of an `Authorization: Bearer ...` header, or undefined. */
export function bearerToken(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (header === undefined) return undefined;
  const match = /^Bearer[ ]+([^\s]+)\s*$/i.exec(header);
  return match?.[1];
}

/** The principal behind the request's token; throws E_UNAUTHORIZED. */
export function authenticate(req: IncomingMessage, tokens: TokenStore): Principal {
  const principal = tokens.verify(bearerToken(req));
  if (principal === undefined) throw new P2pzError('E_UNAUTHORIZED');
  return principal;
}

const PRINCIPALS = new WeakMap<ServerResponse, Principal>();

export function setPrincipal(res: ServerResponse, principal: Principal): void {
  PRINCIPALS.set(res, principal);
}

/** The authenticated principal of a request that passed the gate; E_UNAUTHORIZED for public routes. */
export function principalOf(res: ServerResponse): Principal {
  const principal = PRINCIPALS.get(res);
  if (principal === undefined) throw new P2pzError('E_UNAUTHORIZED');
  return principal;
}

/** Only the CLI token may ask for pairing codes (a paired plugin cannot mint more pairings). */
export function requireCli(principal: Principal): void {
  if (principal.kind !== 'cli') {
    throw new P2pzError('E_UNAUTHORIZED', 'Only the p2pz command line may do this.', 'Run `p2pz pair` on the machine where the daemon runs.');
  }
}
