// Client identity. A plugin names its event stream with the `x-p2pz-client` header (HTTP) and the
// `clientId` of its WebSocket `hello`; jobs submitted over HTTP are reported on that stream. The key
// the queue sees is derived from the token as well, so a client can never read, cancel or listen to
// the jobs of another token by guessing its client id.
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { CLIENT_HEADER, ClientId, P2pzError } from '../../shared/protocol/index.js';
import type { Principal } from './tokens.js';

/** The client id used when a request names none. */
export const DEFAULT_CLIENT_ID = 'default-client';

/** The queue's client key for a token and a client id: 22 base64url characters (an `Id`). */
export function clientKey(principal: Principal, clientId: string): string {
  return createHash('sha256').update(`${principal.tokenId}\u0000${clientId}`).digest('base64url').slice(0, 22);
}

/** The request's client id (header), validated; E_BAD_REQUEST when malformed. */
export function requestClientId(req: IncomingMessage): string {
  const header = req.headers[CLIENT_HEADER];
  if (header === undefined) return DEFAULT_CLIENT_ID;
  const parsed = ClientId.safeParse(header);
  if (!parsed.success) throw new P2pzError('E_BAD_REQUEST', `The ${CLIENT_HEADER} header must be an id of 8–64 letters, digits, _ or -.`);
  return parsed.data;
}
