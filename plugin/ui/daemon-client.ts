// The plugin's client for the local daemon: HTTP under /v1 and the WebSocket event stream. Every
// answer is parsed by its protocol schema; error answers become P2pzError (code, message, hint); a
// daemon that cannot be reached at all becomes DaemonUnreachable, which the panel explains
// (not running, or the browser's local-network permission). The token travels only in the
// Authorization header and in the WebSocket's first message, never in a URL. Binary messages on the
// event stream are preview frames (shared/protocol/preview-frame.ts), decoded here; one that is not
// well formed is refused with E_BAD_FRAME and never drawn.
import type { z } from 'zod';
import {
  CLIENT_HEADER,
  decodePreviewFrame,
  EVENTS_SUBPROTOCOL,
  EVENTS_TOKEN_PROTOCOL_PREFIX,
  ErrorResponse,
  HealthResponse,
  ImageUploadResponse,
  JobResponse,
  P2pzError,
  PairResponse,
  PROTOCOL_VERSION,
  ServerEvent,
  type ClientMessage,
  type JobRequestInput,
  type JobState,
  type PreviewFrame,
} from '../../shared/protocol/index.js';

export const CLIENT_DEFAULTS = Object.freeze({
  /** A health check that takes longer than this counts as "not reachable". */
  healthTimeoutMs: 3_000,
  /** Uploads and results may be large; they get longer. */
  requestTimeoutMs: 60_000,
});

/** The daemon did not answer at all (not running, wrong port, or blocked by the browser). */
export class DaemonUnreachable extends Error {
  constructor(readonly url: string) {
    super(`The p2pz daemon at ${url} did not answer.`);
    this.name = 'DaemonUnreachable';
  }
}

export type ImageMime = 'image/png' | 'image/jpeg' | 'image/webp';

export interface EventStream {
  send(message: ClientMessage): void;
  close(): void;
}

export interface EventHandlers {
  onEvent(event: ServerEvent): void;
  /** A preview frame (the quick preview's image, or a step preview). */
  onFrame?(frame: PreviewFrame): void;
  /** A binary message that is not a well-formed preview frame (E_BAD_FRAME): dropped. */
  onFrameRefused?(error: P2pzError): void;
  /** The stream closed (daemon stopped, token revoked, network); `code` is the WebSocket close code. */
  onClose(code: number): void;
}

export class DaemonClient {
  readonly baseUrl: string;
  readonly eventsUrl: string;

  constructor(
    readonly port: number,
    /** Names this panel's event stream; jobs it submits are reported there. */
    readonly clientId: string,
    private token: string | null = null,
    /** The label of a pairing made by this client (`p2pz tokens` shows it). */
    readonly pairingLabel: string = 'figma',
    /** A team endpoint's origin (plugin/ui/endpoint.ts); default the local daemon on `port`. */
    endpoint: string | null = null,
  ) {
    this.baseUrl = endpoint ?? `http://localhost:${port}`;
    this.eventsUrl = `${this.baseUrl.replace(/^http/, 'ws')}/v1/events`;
  }

  setToken(token: string | null): void {
    this.token = token;
  }

  private async request(path: string, init: RequestInit & { timeoutMs?: number }): Promise<Response> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), init.timeoutMs ?? CLIENT_DEFAULTS.requestTimeoutMs);
    let response: Response;
    try {
      response = await fetch(`${this.baseUrl}${path}`, { ...init, signal: controller.signal, credentials: 'omit', cache: 'no-store' });
    } catch {
      throw new DaemonUnreachable(this.baseUrl);
    } finally {
      clearTimeout(timer);
    }
    if (!response.ok) throw await errorFrom(response);
    return response;
  }

  private authHeaders(extra: Record<string, string> = {}): Record<string, string> {
    if (this.token === null) throw new P2pzError('E_UNAUTHORIZED');
    return { Authorization: `Bearer ${this.token}`, [CLIENT_HEADER]: this.clientId, ...extra };
  }

  private async json<S extends z.ZodType>(path: string, schema: S, init: RequestInit & { timeoutMs?: number }): Promise<z.output<S>> {
    const response = await this.request(path, init);
    return parseAnswer(schema, await response.json().catch(() => null));
  }

  /** Health is open on the local daemon; a team endpoint asks for the token (sent when there is one). */
  health(): Promise<HealthResponse> {
    const headers: Record<string, string> = this.token === null ? {} : { Authorization: `Bearer ${this.token}` };
    return this.json('/v1/health', HealthResponse, { method: 'GET', headers, timeoutMs: CLIENT_DEFAULTS.healthTimeoutMs });
  }

  async pair(code: string): Promise<string> {
    const body = JSON.stringify({ v: PROTOCOL_VERSION, code, client: this.pairingLabel });
    const answer = await this.json('/v1/pair', PairResponse, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
    return answer.token;
  }

  uploadImage(bytes: Uint8Array, mime: ImageMime): Promise<ImageUploadResponse> {
    return this.json('/v1/images', ImageUploadResponse, { method: 'POST', headers: this.authHeaders({ 'Content-Type': mime }), body: bytes as Uint8Array<ArrayBuffer> });
  }

  async submitJob(request: JobRequestInput): Promise<JobState> {
    const body = JSON.stringify({ v: PROTOCOL_VERSION, ...request });
    const answer = await this.json('/v1/jobs', JobResponse, { method: 'POST', headers: this.authHeaders({ 'Content-Type': 'application/json' }), body });
    return answer.job;
  }

  async cancelJob(jobId: string): Promise<JobState> {
    const answer = await this.json(`/v1/jobs/${encodeURIComponent(jobId)}`, JobResponse, { method: 'DELETE', headers: this.authHeaders() });
    return answer.job;
  }

  async result(resultId: string): Promise<Uint8Array> {
    const response = await this.request(`/v1/results/${encodeURIComponent(resultId)}`, { method: 'GET', headers: this.authHeaders() });
    if (response.headers.get('content-type') !== 'image/png') throw new P2pzError('E_INTERNAL', 'The result is not a PNG image.');
    return new Uint8Array(await response.arrayBuffer());
  }

  /** Opens the event stream and says hello with the token; events and the close are reported. */
  openEvents(handlers: EventHandlers): EventStream {
    const token = this.token;
    if (token === null) throw new P2pzError('E_UNAUTHORIZED');
    // The token as a second subprotocol puts the socket in the daemon's reserve until its hello
    // (docs/SECURITY.md §Event-stream admission); the daemon selects only EVENTS_SUBPROTOCOL.
    const ws = new WebSocket(this.eventsUrl, [EVENTS_SUBPROTOCOL, `${EVENTS_TOKEN_PROTOCOL_PREFIX}${token}`]);
    // Frames arrive as one ArrayBuffer each, read without a copy (a Blob would need an async read).
    ws.binaryType = 'arraybuffer';
    const send = (message: ClientMessage): void => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
    };
    ws.addEventListener('open', () => send({ v: PROTOCOL_VERSION, type: 'hello', token, clientId: this.clientId }));
    ws.addEventListener('message', (message: MessageEvent) => {
      if (message.data instanceof ArrayBuffer) {
        let frame: PreviewFrame;
        try {
          frame = decodePreviewFrame(new Uint8Array(message.data));
        } catch (err) {
          handlers.onFrameRefused?.(err instanceof P2pzError ? err : new P2pzError('E_BAD_FRAME'));
          return;
        }
        handlers.onFrame?.(frame);
        return;
      }
      if (typeof message.data !== 'string') return;
      let json: unknown;
      try {
        json = JSON.parse(message.data);
      } catch {
        return;
      }
      const parsed = ServerEvent.safeParse(json);
      if (parsed.success) handlers.onEvent(parsed.data);
    });
    ws.addEventListener('close', (event: CloseEvent) => handlers.onClose(event.code));
    return { send, close: () => ws.close(1000) };
  }
}

function parseAnswer<S extends z.ZodType>(schema: S, json: unknown): z.output<S> {
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new P2pzError('E_PROTOCOL_VERSION', 'The daemon answered in an unexpected format.');
  return parsed.data;
}

async function errorFrom(response: Response): Promise<P2pzError> {
  const parsed = ErrorResponse.safeParse(await response.json().catch(() => null));
  if (parsed.success) return P2pzError.fromBody(parsed.data);
  return new P2pzError('E_INTERNAL', `The daemon answered HTTP ${response.status}.`);
}

/** A fresh id in the protocol's Id alphabet (client ids, job ids). */
export function randomId(prefix: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let out = `${prefix}_`;
  for (const b of bytes) out += alphabet[b % alphabet.length];
  return out;
}
