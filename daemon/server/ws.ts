// The event stream: one WebSocket per client at /v1/events (docs/SECURITY.md §R11, §R12). The upgrade passes the same
// Host and Origin checks as every HTTP request; the token never travels in the URL: the first frame
// must be `hello` with the token and the client id, within two seconds, else the socket is closed.
// Sockets waiting for their hello are admitted by ws-admission.ts (docs/SECURITY.md §Event-stream
// admission), so that pages without a token cannot crowd out the plugin. Frames are small text
// (no compression, 64 KiB at most: a larger frame closes with 1009); every message is parsed, and a
// bad one (not JSON, unknown type, other version) gets a `protocol-error` event while the connection
// stays. The daemon's own binary frames are preview frames (shared/protocol/preview-frame.ts), sent
// only to the authenticated streams of the client whose job made them. Connections per token are capped, dead peers are found by ping/pong, a revoked token's
// sockets are closed, and a peer that does not read its events is dropped rather than buffered.
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import {
  ClientMessage,
  ERRORS,
  EVENTS_SUBPROTOCOL,
  EVENTS_TOKEN_PROTOCOL_PREFIX,
  P2pzError,
  PREVIEW_FRAME_MAX_BYTES,
  PROTOCOL_VERSION,
  WS_CLOSE_TOKEN_REVOKED,
  type HealthResponse,
  type ServerEvent,
} from '../../shared/protocol/index.js';
import type { PreviewFrameParts } from '../jobs/queue.js';
import { describeError } from '../log.js';
import { ABANDONED_DEFAULTS, AbandonedClients } from './abandoned-clients.js';
import { clientKey } from './clients.js';
import type { ServiceContext } from './context.js';
import type { Gate } from './gate.js';
import type { Server } from './http-server.js';
import { errorBody, toP2pzError } from './respond.js';
import { PendingSockets } from './ws-admission.js';
import type { Principal } from './tokens.js';
import { checkVersion, parseBody, parseJsonText } from './validate.js';

export interface WsOptions {
  readonly path: string;
  readonly maxPayloadBytes: number;
  readonly helloTimeoutMs: number;
  readonly maxConnectionsPerToken: number;
  readonly heartbeatMs: number;
  readonly maxBufferedBytes: number;
  readonly maxPendingConnections: number;
  /** A client without any event stream for this long has its jobs cancelled (abandoned-clients.ts). */
  readonly abandonedJobGraceMs: number;
  readonly maxPendingPerSource: number;
}

export const WS_DEFAULTS: WsOptions = Object.freeze({
  /** The only WebSocket path. */
  path: '/v1/events',
  /** Largest frame accepted from a client; larger closes the connection with 1009. */
  maxPayloadBytes: 64 * 1024,
  /** The `hello` must arrive within this time, else the connection is closed (1008). A client sends
   *  it as soon as the socket opens: one round trip on the loopback. */
  helloTimeoutMs: 2_000,
  /** Open event streams per token; one more is refused. */
  maxConnectionsPerToken: 4,
  /** Ping interval; a peer that has not answered the previous ping is terminated. */
  heartbeatMs: 30_000,
  /** A peer with more unsent bytes than this is not reading: it is terminated. JSON events are a few
   *  KB; this is one of the largest preview frames (4 MiB of pixels) and 1 MiB more. */
  maxBufferedBytes: PREVIEW_FRAME_MAX_BYTES + 1024 * 1024,
  /** Sockets without a token that have not said hello yet, in all; beyond it the oldest waiting socket
   *  of the source holding the most is closed (1013) to make room (ws-admission.ts). */
  maxPendingConnections: 32,
  /** See abandoned-clients.ts: long enough for a page reload, short next to a render. */
  abandonedJobGraceMs: ABANDONED_DEFAULTS.graceMs,
  /** The same from one source (Origin + peer address); beyond it that source's oldest is closed. */
  maxPendingPerSource: 8,
});

/** WebSocket close codes used here (RFC 6455 §7.4.1). */
export const CLOSE = Object.freeze({ goingAway: 1001, policy: 1008, tooBig: 1009, internal: 1011, tryAgain: 1013 });

const MESSAGE_TYPES = new Set(['hello', 'cancel', 'ping']);

export interface EventsServer {
  /** Open connections (authenticated or not). */
  connections(): number;
  /** Closes every connection (1001) and refuses new upgrades. */
  close(): Promise<void>;
}

interface Peer {
  readonly ws: WebSocket;
  alive: boolean;
  principal: Principal | undefined;
  /** The queue's client key (token + client id), set by hello. */
  key: string;
  unsubscribe: (() => void) | undefined;
  helloTimer: NodeJS.Timeout | undefined;
  /** Whether a frame has arrived: the first must be hello. */
  spoke: boolean;
  /** Takes the socket out of the waiting line (hello said, or closed). */
  leaveWaiting: () => void;
}

/** The token a client offered as a `p2pz.token.<token>` subprotocol, if any. */
function offeredToken(req: IncomingMessage): string | undefined {
  const header = req.headers['sec-websocket-protocol'];
  if (typeof header !== 'string') return undefined;
  for (const protocol of header.split(',')) {
    const trimmed = protocol.trim();
    if (trimmed.startsWith(EVENTS_TOKEN_PROTOCOL_PREFIX)) return trimmed.slice(EVENTS_TOKEN_PROTOCOL_PREFIX.length);
  }
  return undefined;
}

function rejectUpgrade(socket: Duplex, err: P2pzError): void {
  const body = JSON.stringify(errorBody(err));
  const status = ERRORS[err.code].status;
  socket.on('error', () => undefined);
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
      `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `Cache-Control: no-store\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** One client message, parsed; throws E_BAD_REQUEST, E_PROTOCOL_VERSION or E_UNKNOWN_MESSAGE. */
export function parseClientMessage(data: RawData, isBinary: boolean): ClientMessage {
  if (isBinary) throw new P2pzError('E_BAD_REQUEST', 'Messages must be JSON text frames.');
  const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
  const value = parseJsonText(bytes);
  checkVersion(value);
  const type = (value as { type?: unknown } | null)?.type;
  if (typeof type === 'string' && !MESSAGE_TYPES.has(type)) {
    throw new P2pzError('E_UNKNOWN_MESSAGE', `Unknown message type "${type.slice(0, 40)}".`);
  }
  return parseBody(ClientMessage, value);
}

export function attachEvents(server: Server, gate: Gate, ctx: ServiceContext, options: Partial<WsOptions> = {}): EventsServer {
  const o = { ...WS_DEFAULTS, ...options };
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: o.maxPayloadBytes,
    clientTracking: false,
    // Only p2pz.v1 is ever selected: a token offered as a subprotocol is never echoed back.
    handleProtocols: (protocols) => (protocols.has(EVENTS_SUBPROTOCOL) ? EVENTS_SUBPROTOCOL : false),
  });
  const peers = new Set<Peer>();
  const abandoned = new AbandonedClients(
    (key) => ctx.queue.cancelClient(key),
    o.abandonedJobGraceMs,
    (count) => ctx.log.info('jobs.abandoned-cancelled', { count }),
  );
  const waiting = new PendingSockets({
    maxPending: o.maxPendingConnections,
    maxPendingPerSource: o.maxPendingPerSource,
    maxReservedPerToken: o.maxConnectionsPerToken,
  });
  let closing = false;

  const send = (peer: Peer, event: ServerEvent | PreviewFrameParts): void => {
    if (peer.ws.readyState !== peer.ws.OPEN) return;
    if (Array.isArray(event)) {
      // One binary message in two fragments (header, pixels), sent back to back: nothing comes between.
      const [head, pixels] = event as PreviewFrameParts;
      peer.ws.send(head, { binary: true, fin: false });
      peer.ws.send(pixels, { binary: true, fin: true });
    } else peer.ws.send(JSON.stringify(event));
    if (peer.ws.bufferedAmount > o.maxBufferedBytes) {
      ctx.log.warn('ws.slow-peer-dropped', { tokenId: peer.principal?.tokenId });
      peer.ws.terminate();
    }
  };
  const protocolError = (peer: Peer, err: P2pzError): void =>
    send(peer, { v: PROTOCOL_VERSION, type: 'protocol-error', error: err.toBody() });

  const hello = async (peer: Peer, msg: Extract<ClientMessage, { type: 'hello' }>): Promise<void> => {
    if (peer.principal !== undefined) throw new P2pzError('E_BAD_REQUEST', 'This connection already said hello.');
    const principal = ctx.tokens.verify(msg.token);
    if (principal === undefined || principal.kind === 'worker') {
      protocolError(peer, new P2pzError('E_UNAUTHORIZED'));
      peer.ws.close(CLOSE.policy, 'unauthorized');
      return;
    }
    const open = [...peers].filter((p) => p.principal?.tokenId === principal.tokenId).length;
    if (open >= o.maxConnectionsPerToken) {
      protocolError(peer, new P2pzError('E_RATE_LIMITED', `At most ${o.maxConnectionsPerToken} event streams per pairing.`, 'Close other plugin windows, or wait a minute.'));
      peer.ws.close(CLOSE.policy, 'too many connections');
      return;
    }
    clearTimeout(peer.helloTimer);
    peer.leaveWaiting();
    peer.principal = principal;
    peer.key = clientKey(principal, msg.clientId);
    abandoned.connected(peer.key);
    // Events of jobs that change while the welcome is prepared wait behind it.
    const backlog: (ServerEvent | PreviewFrameParts)[] = [];
    let welcomed = false;
    const deliver = (event: ServerEvent | PreviewFrameParts): void => {
      if (welcomed) send(peer, event);
      else backlog.push(event);
    };
    peer.unsubscribe = ctx.queue.subscribe(peer.key, deliver, deliver);
    let health: HealthResponse;
    try {
      health = await ctx.health();
    } catch (err) {
      ctx.log.error('ws.welcome-failed', describeError(err));
      peer.ws.close(CLOSE.internal, 'internal error');
      return;
    }
    send(peer, { v: PROTOCOL_VERSION, type: 'welcome', health });
    welcomed = true;
    for (const event of backlog.splice(0)) send(peer, event);
    ctx.log.info('ws.hello', { tokenId: principal.tokenId });
  };

  const onMessage = async (peer: Peer, data: RawData, isBinary: boolean): Promise<void> => {
    const first = !peer.spoke;
    peer.spoke = true;
    let msg: ClientMessage;
    try {
      msg = parseClientMessage(data, isBinary);
      if (first && msg.type !== 'hello') throw new P2pzError('E_UNAUTHORIZED', 'The first message must be hello with the token.');
    } catch (err) {
      // A socket that does not open with hello is no client of ours: it does not get to wait.
      if (first) {
        protocolError(peer, toP2pzError(err));
        peer.ws.close(CLOSE.policy, 'hello first');
        return;
      }
      throw err;
    }
    if (msg.type === 'hello') return hello(peer, msg);
    if (peer.principal === undefined) throw new P2pzError('E_UNAUTHORIZED', 'Send hello with the token first.');
    if (msg.type === 'ping') {
      send(peer, { v: PROTOCOL_VERSION, type: 'pong', ...(msg.nonce === undefined ? {} : { nonce: msg.nonce }) });
      return;
    }
    // cancel: the queue sends the `cancelled` event on this stream.
    ctx.queue.cancel(peer.key, msg.jobId);
  };

  const onConnection = (ws: WebSocket, source: string, tokenId: string | undefined): void => {
    const peer: Peer = { ws, alive: true, principal: undefined, key: '', unsubscribe: undefined, helloTimer: undefined, spoke: false, leaveWaiting: () => undefined };
    peers.add(peer);
    peer.leaveWaiting = waiting.admit(source, tokenId, () => {
      ctx.log.debug('ws.evicted-waiting');
      ws.close(CLOSE.tryAgain, 'too many waiting');
    });
    peer.helloTimer = setTimeout(() => ws.close(CLOSE.policy, 'hello timeout'), o.helloTimeoutMs);
    ws.on('pong', () => {
      peer.alive = true;
    });
    ws.on('message', (data, isBinary) => {
      onMessage(peer, data, isBinary).catch((err: unknown) => {
        const e = toP2pzError(err);
        if (e.code === 'E_INTERNAL') ctx.log.error('ws.internal-error', describeError(err));
        protocolError(peer, e);
      });
    });
    ws.on('error', (err) => ctx.log.info('ws.error', describeError(err)));
    ws.on('close', () => {
      clearTimeout(peer.helloTimer);
      if (peer.principal !== undefined && !closing) abandoned.disconnected(peer.key);
      peer.leaveWaiting();
      peer.unsubscribe?.();
      peers.delete(peer);
    });
  };

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    try {
      if (closing) throw new P2pzError('E_SHUTTING_DOWN');
      gate.checkUpgrade(req);
      const path = (req.url ?? '').split('?')[0];
      if (path !== o.path) throw new P2pzError('E_NOT_FOUND');
    } catch (err) {
      rejectUpgrade(socket, toP2pzError(err));
      return;
    }
    const source = `${req.headers.origin ?? '-'} ${req.socket.remoteAddress ?? '-'}`;
    const tokenId = ctx.tokens.verify(offeredToken(req))?.tokenId;
    wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, source, tokenId));
  };
  server.on('upgrade', onUpgrade);

  const heartbeat = setInterval(() => {
    for (const peer of peers) {
      if (!peer.alive) {
        peer.ws.terminate();
        continue;
      }
      peer.alive = false;
      peer.ws.ping();
      // An open event stream is a use of its token (for the expiry of unused tokens).
      if (peer.principal !== undefined && peer.principal.kind === 'client') ctx.tokens.touch(peer.principal.tokenId);
    }
  }, o.heartbeatMs);
  heartbeat.unref();

  // A revoked or expired token: its open streams hear why, then close with their own code.
  const stopRevoked = ctx.tokens.onRevoke((tokenId) => {
    for (const peer of peers) {
      if (peer.principal?.tokenId !== tokenId) continue;
      protocolError(peer, new P2pzError('E_UNAUTHORIZED', 'This pairing was revoked.', 'Pair again with a fresh code (`p2pz pair`).'));
      peer.ws.close(WS_CLOSE_TOKEN_REVOKED, 'token revoked');
    }
  });

  return {
    connections: () => peers.size,
    close: async () => {
      closing = true;
      abandoned.close();
      clearInterval(heartbeat);
      stopRevoked();
      server.off('upgrade', onUpgrade);
      const closed = [...peers].map(
        (peer) =>
          new Promise<void>((resolve) => {
            peer.ws.once('close', () => resolve());
            peer.ws.close(CLOSE.goingAway, 'daemon shutting down');
            setTimeout(() => {
              peer.ws.terminate();
              resolve();
            }, 1_000).unref();
          }),
      );
      await Promise.all(closed);
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}
