// A scripted DaemonClient for the panel's connection and job runner tests: it replaces HTTP and the
// WebSocket. It answers as the daemon does (the same schemas parse every answer and every event it
// delivers; the same error codes: E_PAIRING_INVALID for a wrong code, E_UNAUTHORIZED without a token,
// E_NOT_FOUND for an upload the daemon no longer knows, as daemon/server/routes/jobs.ts answers), and
// the test plays the event stream: `stream.emit(...)` delivers an event, `stream.drop(code)` closes it.
// The POST and the event stream are two sockets, so a job's first events can reach the client before
// the POST's answer does (seen in test/web/page.test.ts on the real daemon: a caption job with no
// captioner installed fails in the worker while its POST's answer is still on the way);
// `beforeSubmitAnswer` plays that order.
import {
  decodePreviewFrame,
  HealthResponse,
  ImageUploadResponse,
  JobState,
  normalizePairingCode,
  P2pzError,
  PROTOCOL_VERSION,
  ServerEvent,
  type ClientMessage,
  type JobOutcome,
  type JobRequestInput,
  type PreviewFrame,
  type ServerEvent as ServerEventType,
} from '../../../shared/protocol/index.js';
import type { DaemonApi } from '../../../plugin/ui/connection.js';
import { DaemonUnreachable, type EventHandlers, type EventStream, type ImageMime } from '../../../plugin/ui/daemon-client.js';

export function healthOf(overrides: Partial<HealthResponse> = {}): HealthResponse {
  return HealthResponse.parse({
    v: PROTOCOL_VERSION,
    name: 'p2pz',
    version: '0.1.0',
    state: 'ready',
    device: { provider: 'cpu', reason: 'no CUDA' },
    worker: { state: 'ready', restarts: 0, recentCrashes: 0 },
    models: [{ name: 'cat2dog', kind: 'gan', direction: { source: 'cat', target: 'dog' } }],
    queue: { running: 0, queued: 0 },
    ...overrides,
  });
}

export class FakeStream implements EventStream {
  readonly sent: ClientMessage[] = [];
  closed = false;

  constructor(readonly token: string, private readonly handlers: EventHandlers) {}

  send(message: ClientMessage): void {
    if (!this.closed) this.sent.push(message);
  }

  /** The panel closed it (the daemon reports nothing back for that: onClose comes from the socket). */
  close(): void {
    this.closed = true;
  }

  /** Delivers an event as the daemon sends it (parsed by the protocol's schema first). */
  emit(event: ServerEventType): void {
    if (this.closed) throw new Error('the stream is closed');
    this.handlers.onEvent(ServerEvent.parse(event));
  }

  /** Delivers a binary message as the daemon's socket does: decoded by the plugin's own decoder, a
   *  malformed one refused as DaemonClient refuses it. */
  binary(bytes: Uint8Array): void {
    if (this.closed) throw new Error('the stream is closed');
    let frame: PreviewFrame;
    try {
      frame = decodePreviewFrame(bytes);
    } catch (err) {
      this.handlers.onFrameRefused?.(err as P2pzError);
      return;
    }
    this.handlers.onFrame?.(frame);
  }

  welcome(health: HealthResponse = healthOf()): void {
    this.emit({ v: PROTOCOL_VERSION, type: 'welcome', health });
  }

  /** The socket closes from the daemon's side (1001 going away, 1006 dropped, 1008 refused). */
  drop(code: number): void {
    this.closed = true;
    this.handlers.onClose(code);
  }
}

export class FakeDaemonClient implements DaemonApi {
  /** While true, every request fails as a daemon that is not running. */
  down = false;
  healthAnswer = healthOf();
  /** The pairing code the daemon printed. */
  code = '7K3Q-MXR9';
  readonly streams: FakeStream[] = [];
  readonly uploads: { bytes: Uint8Array; mime: ImageMime; imageId: string }[] = [];
  readonly submitted: JobRequestInput[] = [];
  readonly cancelled: string[] = [];
  /** Upload ids the daemon knows (forget one to make it expire). */
  readonly knownImages = new Set<string>();
  readonly results = new Map<string, Uint8Array>();
  healthCalls = 0;
  private next = 1;

  /** A fresh id in the protocol's Id alphabet (8–64 characters). */
  private id(prefix: string): string {
    return `${prefix}_${String(this.next++).padStart(8, '0')}`;
  }

  constructor(readonly port: number, readonly clientId: string, public token: string | null, readonly pairingLabel: string) {}

  setToken(token: string | null): void {
    this.token = token;
  }

  get stream(): FakeStream {
    const s = this.streams.at(-1);
    if (s === undefined) throw new Error('no event stream was opened');
    return s;
  }

  private reachable(): void {
    if (this.down) throw new DaemonUnreachable(`http://localhost:${this.port}`);
  }

  private authorized(): void {
    this.reachable();
    if (this.token === null) throw new P2pzError('E_UNAUTHORIZED');
  }

  async health(): Promise<HealthResponse> {
    this.healthCalls++;
    this.reachable();
    return this.healthAnswer;
  }

  /** Codes as they reached the daemon. */
  readonly pairCodes: string[] = [];

  async pair(code: string): Promise<string> {
    this.reachable();
    this.pairCodes.push(code);
    // The daemon reads the code as normalizePairingCode does; the client sends the shown form.
    if (normalizePairingCode(code) !== normalizePairingCode(this.code)) throw new P2pzError('E_PAIRING_INVALID');
    return `tok_${this.next++}`;
  }

  async uploadImage(bytes: Uint8Array, mime: ImageMime): Promise<ImageUploadResponse> {
    this.authorized();
    const imageId = this.id('img');
    this.uploads.push({ bytes, mime, imageId });
    this.knownImages.add(imageId);
    return ImageUploadResponse.parse({ v: PROTOCOL_VERSION, imageId, width: 8, height: 8, format: 'png' });
  }

  /** Runs after a job is accepted and before its POST answers: events emitted here come first. */
  beforeSubmitAnswer: ((job: JobState) => void) | undefined;

  async submitJob(request: JobRequestInput): Promise<JobState> {
    this.authorized();
    if (!this.knownImages.has(request.imageId)) throw new P2pzError('E_NOT_FOUND', 'The uploaded image is unknown or has expired.');
    this.submitted.push(request);
    const state = JobState.parse({ jobId: request.jobId, kind: request.kind, state: 'queued', position: 1, createdAt: 0 });
    if (this.beforeSubmitAnswer !== undefined) {
      this.beforeSubmitAnswer(state);
      // The answer then comes a macrotask later, as over HTTP (unhandled rejections are reported then).
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return state;
  }

  async cancelJob(jobId: string): Promise<JobState> {
    this.authorized();
    this.cancelled.push(jobId);
    return JobState.parse({ jobId, kind: 'render', state: 'cancelled', createdAt: 0 });
  }

  async result(resultId: string): Promise<Uint8Array> {
    this.authorized();
    const bytes = this.results.get(resultId);
    if (bytes === undefined) throw new P2pzError('E_NOT_FOUND');
    return bytes;
  }

  openEvents(handlers: EventHandlers): EventStream {
    if (this.token === null) throw new P2pzError('E_UNAUTHORIZED');
    const stream = new FakeStream(this.token, handlers);
    this.streams.push(stream);
    return stream;
  }

  /** The last submitted job's id. */
  get lastJobId(): string {
    const id = this.submitted.at(-1)?.jobId;
    if (id === undefined) throw new Error('no job was submitted');
    return id;
  }

  /** Stores a result image (and mask) and answers the outcome that names them. */
  outcome(engine: JobOutcome['engine'] = 'gan', mask = false): JobOutcome {
    const image = this.id('res');
    this.results.set(image, new Uint8Array([137, 80, 78, 71, this.next]));
    const refs: JobOutcome['results'] = [{ id: image, role: 'image', mime: 'image/png', width: 8, height: 8 }];
    if (mask) {
      const id = this.id('res');
      this.results.set(id, new Uint8Array([137, 80, 78, 71, 0]));
      refs.push({ id, role: 'mask', mime: 'image/png', width: 8, height: 8 });
    }
    return { results: refs, engine, timings: { total: 1500 }, device: 'cpu' };
  }
}
