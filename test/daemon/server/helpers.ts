// Test helpers for the service: a scriptable fake JobEngine (it stands in for the worker; the thing
// under test is the HTTP/WS service), a daemon in a temporary home, raw HTTP requests with any
// headers (fetch cannot set Host), and a WebSocket client that collects events.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { CLIENT_HEADER, decodePreviewFrame, PROTOCOL_VERSION, type PreviewFrame, type PreviewPixels } from '../../../shared/protocol/index.js';
import type { EngineHealth, EngineJob, EngineProgress, EngineResult, JobEngine } from '../../../daemon/jobs/engine.js';
import { startDaemon, type DaemonOptions, type RunningDaemon } from '../../../daemon/daemon.js';
import { silentLogger } from '../../../daemon/log.js';
import { crc32 } from '../../../daemon/image/sniff.js';

/** A 1×1 opaque PNG (valid signature, IHDR, IDAT, IEND). */
export const PNG_1X1 = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC',
  'base64',
);

/** A PNG header claiming `width`×`height` (IHDR only; enough for the sniffer). */
export function pngHeader(width: number, height: number): Buffer {
  const buf = Buffer.from(PNG_1X1);
  buf.writeUInt32BE(width, 16);
  buf.writeUInt32BE(height, 20);
  // IHDR CRC over type + data (bytes 12..29).
  buf.writeUInt32BE(crc32(buf.subarray(12, 29)), 29);
  return buf;
}

/** Runs every job as scripted: `mode: 'done'` finishes at once, `'hold'` runs until aborted. */
export class FakeEngine implements JobEngine {
  mode: 'done' | 'hold' = 'done';
  /** Preview pixels sent with the first progress (as the GAN preview sends its image). */
  frame: PreviewPixels | undefined;
  readonly jobs: EngineJob[] = [];
  closed = false;

  async run(job: EngineJob, onProgress: (p: EngineProgress) => void, signal: AbortSignal): Promise<EngineResult> {
    this.jobs.push(job);
    onProgress(this.frame === undefined ? { stage: 'generate', step: 1, total: 2 } : { stage: 'generate', step: 1, total: 2, frame: this.frame });
    if (this.mode === 'hold') {
      await new Promise<void>((resolve) => {
        if (signal.aborted) resolve();
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
      return { status: 'cancelled' };
    }
    return { status: 'done', outputs: [{ role: 'image', png: PNG_1X1, width: 1, height: 1 }], engine: 'gan', timings: { generate: 1 } };
  }

  health(): EngineHealth {
    return { state: this.closed ? 'stopped' : 'ready', restarts: 0, recentCrashes: 0, device: { provider: 'cpu', reason: 'test' } };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

export interface TestDaemon {
  readonly daemon: RunningDaemon;
  readonly engine: FakeEngine;
  readonly home: string;
  /** The CLI token. */
  readonly cliToken: string;
  /** A paired client token. */
  readonly token: string;
  stop(): Promise<void>;
}

/** Starts the real daemon on 127.0.0.1:0 in a temporary home with a fake engine, and pairs a client. */
export async function startTestDaemon(options: DaemonOptions = {}): Promise<TestDaemon> {
  const home = await mkdtemp(join(tmpdir(), 'p2pz-server-'));
  const engine = new FakeEngine();
  const daemon = await startDaemon({ port: 0, home, engine, log: silentLogger, models: async () => [], ...options });
  const cliToken = (await readFile(daemon.paths.cliToken, 'utf8')).trim();
  const { code } = daemon.pairingCode();
  const paired = await send(daemon, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code } });
  const token = (paired.json as { token: string }).token;
  return {
    daemon,
    engine,
    home,
    cliToken,
    token,
    stop: async () => {
      await daemon.close();
      await rm(home, { recursive: true, force: true });
    },
  };
}

export interface SendOptions {
  method?: string;
  path: string;
  headers?: Record<string, string>;
  /** JSON body (sets Content-Type: application/json unless given). */
  json?: unknown;
  body?: Buffer | string;
  token?: string;
}

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  bytes: Buffer;
  json: unknown;
}

/** One HTTP request to the daemon with exactly the given headers (Host defaults to 127.0.0.1:port). */
export function send(daemon: { port: number }, options: SendOptions): Promise<Reply> {
  const headers: Record<string, string> = { Host: `127.0.0.1:${daemon.port}`, ...options.headers };
  let body = options.body;
  if (options.json !== undefined) {
    body = JSON.stringify(options.json);
    headers['Content-Type'] ??= 'application/json';
  }
  if (options.token !== undefined) headers['Authorization'] = `Bearer ${options.token}`;
  if (body !== undefined && headers['Transfer-Encoding'] === undefined) headers['Content-Length'] ??= String(Buffer.byteLength(body));
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: daemon.port, method: options.method ?? 'GET', path: options.path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const bytes = Buffer.concat(chunks);
        const text = bytes.toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, bytes, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The `code` of an error reply. */
export function codeOf(reply: Reply): string | undefined {
  return (reply.json as { code?: string } | undefined)?.code;
}

/** A WebSocket client that records every event and the close code. */
export class EventClient {
  readonly events: Array<Record<string, unknown>> = [];
  /** Binary messages, decoded as the plugin decodes them (shared/protocol/preview-frame.ts). */
  readonly frames: PreviewFrame[] = [];
  /** Binary messages that were not well-formed frames: the decoder's error. */
  readonly refusedFrames: unknown[] = [];
  closeCode: number | undefined;
  readonly opened: Promise<void>;
  readonly closed: Promise<number>;
  private waiters: Array<() => void> = [];

  constructor(
    readonly ws: WebSocket,
  ) {
    this.opened = new Promise((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code) => {
        this.closeCode = code;
        resolve(code);
        this.wake();
      });
    });
    ws.on('error', () => undefined);
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        try {
          this.frames.push(decodePreviewFrame(Array.isArray(data) ? Buffer.concat(data) : new Uint8Array(data as ArrayBuffer)));
        } catch (err) {
          this.refusedFrames.push(err);
        }
      } else {
        this.events.push(JSON.parse(String(data)) as Record<string, unknown>);
      }
      this.wake();
    });
  }

  static connect(daemon: { port: number }, headers: Record<string, string> = {}): EventClient {
    return new EventClient(new WebSocket(`ws://127.0.0.1:${daemon.port}/v1/events`, { headers, perMessageDeflate: false }));
  }

  sendJson(value: unknown): void {
    this.ws.send(JSON.stringify(value));
  }

  /** Waits for an event matching `pred` (or the close), up to `timeoutMs`. */
  async next(pred: (e: Record<string, unknown>) => boolean, timeoutMs = 5_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.find(pred);
      if (found) return found;
      if (this.closeCode !== undefined) throw new Error(`closed with ${this.closeCode} before the event arrived`);
      if (Date.now() > deadline) throw new Error(`no matching event; got ${JSON.stringify(this.events)}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

/** The daemon's CLI token as request headers for `clientId`, and an event stream said hello to and
 *  welcomed under that client id. */
export async function cliEventStream(daemon: RunningDaemon, clientId: string): Promise<{ token: string; auth: Record<string, string>; events: EventClient }> {
  const token = (await readFile(daemon.paths.cliToken, 'utf8')).trim();
  const events = EventClient.connect(daemon);
  await events.opened;
  events.sendJson({ v: PROTOCOL_VERSION, type: 'hello', token, clientId });
  await events.next((e) => e.type === 'welcome', 20_000);
  return { token, auth: { authorization: `Bearer ${token}`, [CLIENT_HEADER]: clientId }, events };
}
