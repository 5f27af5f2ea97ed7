// The Node HTTP server under the express app, with the limits that protect it from slow or malformed
// clients (docs/SECURITY.md §R22): a deadline for the headers and for the whole request, a cap on header size, short
// keep-alive. Errors Node detects before express sees the request (a header overflow, a timeout, a
// malformed request line) are answered as JSON too, then the connection is closed. With a certificate
// and key (tls.ts) the same server is a node:https one, under the same limits; the TLS handshake gets
// the headers' deadline, and a failed handshake only closes that connection.
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { P2pzError } from '../../shared/protocol/index.js';
import { errorBody } from './respond.js';
import { TLS_DEFAULTS, type TlsMaterial } from './tls.js';

/** Plain HTTP on loopback (and behind a proxy), HTTPS when listening beyond with a certificate. */
export type Server = HttpServer | HttpsServer;

export interface HttpOptions {
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly maxHeaderBytes: number;
  readonly connectionsCheckingIntervalMs: number;
  readonly maxConnections: number;
}

export const HTTP_DEFAULTS: HttpOptions = Object.freeze({
  /** All request headers must have arrived within this time (slow-loris). */
  headersTimeoutMs: 10_000,
  /** The whole request, body included, must have arrived within this time (a 50 MiB upload at 1 MB/s fits). */
  requestTimeoutMs: 120_000,
  /** An idle keep-alive connection is closed after this time. */
  keepAliveTimeoutMs: 5_000,
  /** Total size of the request line and headers. */
  maxHeaderBytes: 16 * 1024,
  /** How often Node checks the two timeouts above (it checks on an interval, not per request). */
  connectionsCheckingIntervalMs: 1_000,
  /** Open TCP connections (HTTP and WebSocket together); more are dropped on arrival. */
  maxConnections: 256,
});

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** The status line and p2pz error for a client error Node raised. */
function clientErrorAnswer(code: string | undefined): { status: string; error: P2pzError } {
  if (code === 'HPE_HEADER_OVERFLOW') {
    return { status: '431 Request Header Fields Too Large', error: new P2pzError('E_BAD_REQUEST', 'The request headers are too large.') };
  }
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    return { status: '408 Request Timeout', error: new P2pzError('E_TIMEOUT', 'The request did not arrive in time.') };
  }
  return { status: '400 Bad Request', error: new P2pzError('E_BAD_REQUEST', 'The request is not valid HTTP.') };
}

export function createHttpServer(handler: Handler, options: Partial<HttpOptions> = {}, tls?: TlsMaterial): Server {
  const o = { ...HTTP_DEFAULTS, ...options };
  const limits = {
    headersTimeout: o.headersTimeoutMs,
    requestTimeout: o.requestTimeoutMs,
    keepAliveTimeout: o.keepAliveTimeoutMs,
    maxHeaderSize: o.maxHeaderBytes,
    connectionsCheckingInterval: o.connectionsCheckingIntervalMs,
  };
  const server: Server =
    tls === undefined
      ? createServer(limits, handler)
      : createHttpsServer({ ...limits, cert: tls.cert, key: tls.key, minVersion: TLS_DEFAULTS.minVersion, handshakeTimeout: o.headersTimeoutMs }, handler);
  server.maxConnections = o.maxConnections;
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const { status, error } = clientErrorAnswer(err.code);
    const body = JSON.stringify(errorBody(error));
    socket.end(
      `HTTP/1.1 ${status}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `Cache-Control: no-store\r\nConnection: close\r\n\r\n${body}`,
    );
  });
  return server;
}
