// The panel's connection to the daemon, as a state machine: connecting → offline (looks again every
// few seconds) | unpaired (waits for the code) | ready (the event stream said welcome). It owns the
// client, the token and the event stream, and routes each job's events to whoever submitted the job.
// It touches no DOM: what it decides goes to a ConnectionListener (the panel's view), so that it can
// be driven by a fake client in tests.
import { formatPairingCode, normalizePairingCode, P2pzError, PROTOCOL_VERSION, type HealthResponse, type JobEvent, type JobKind, type PreviewFrame, type ServerEvent } from '../../shared/protocol/index.js';
import { DaemonUnreachable, type DaemonClient, type EventStream } from './daemon-client.js';
import { endpointPort } from './endpoint.js';
import { NOT_A_PAIRING_CODE, problemFor, type LocalNetworkPermission, type Problem } from './problems.js';
import type { PanelHost } from './host.js';

export const CONNECTION_DEFAULTS = Object.freeze({
  /** While the daemon is unreachable, look again this often. */
  retryMs: 4_000,
});

export type ConnectionState = 'connecting' | 'offline' | 'unpaired' | 'ready';

/** What the connection and the job runner need of DaemonClient (a fake stands in for it in tests). */
export type DaemonApi = Pick<DaemonClient, 'port' | 'setToken' | 'health' | 'pair' | 'uploadImage' | 'submitJob' | 'cancelJob' | 'result' | 'openEvents'>;

/** What the connection reports. */
export interface ConnectionListener {
  /** The state changed (or its words did). */
  status(state: ConnectionState, text: string): void;
  /** A problem with the connection (null: none); `retry` offers "Try again". */
  problem(problem: Problem | null, retry: boolean): void;
  health(health: HealthResponse): void;
  /** Show (or hide) the pairing form. */
  pairing(shown: boolean): void;
  /** The event stream said welcome: jobs may run. */
  ready(): void;
}

export interface ConnectionOptions {
  /** Names this panel's event stream (and the prefix of nothing else). */
  readonly clientId: string;
  readonly host: Pick<PanelHost, 'client' | 'saveToken' | 'notify' | 'unreachableNote'>;
  readonly listener: ConnectionListener;
  /** Makes the client for the daemon on `port`, or at `endpoint` when one was chosen (a DaemonClient
   *  in the panel). */
  readonly createClient: (port: number, clientId: string, token: string | null, pairingLabel: string, endpoint: string | null) => DaemonApi;
  /** The browser's local-network permission, asked when the daemon does not answer. */
  readonly permission: () => Promise<LocalNetworkPermission>;
  readonly retryMs?: number;
}

type JobWatcher = { readonly kind: JobKind; readonly onEvent: (event: JobEvent) => void; readonly onFrame: ((frame: PreviewFrame) => void) | undefined };

export class Connection {
  private client_: DaemonApi | null = null;
  private token: string | null = null;
  private state_: ConnectionState = 'connecting';
  private stream: EventStream | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly watchers = new Map<string, JobWatcher>();

  constructor(private readonly options: ConnectionOptions) {}

  get state(): ConnectionState {
    return this.state_;
  }

  get client(): DaemonApi | null {
    return this.client_;
  }

  /** The daemon's port (0 before the host said which). */
  get port(): number {
    return this.client_?.port ?? 0;
  }

  /** The host said where the daemon is and which token it kept: connect. `endpoint`: a team
   *  endpoint chosen in the panel, or null for the local daemon on `port`. */
  start(port: number, token: string | null, endpoint: string | null = null): Promise<void> {
    this.stop();
    this.token = token;
    this.client_ = this.options.createClient(endpoint === null ? port : endpointPort(endpoint), this.options.clientId, token, this.options.host.client, endpoint);
    return this.connect();
  }

  /** Stops looking again (the panel is going away, or a test ends). */
  stop(): void {
    clearTimeout(this.retryTimer);
    const stream = this.stream;
    this.stream = null;
    stream?.close();
  }

  private setState(state: ConnectionState, text: string): void {
    this.state_ = state;
    this.options.listener.status(state, text);
  }

  private retryLater(): void {
    this.retryTimer = setTimeout(() => void this.connect(), this.options.retryMs ?? CONNECTION_DEFAULTS.retryMs);
  }

  /** Health first; then the event stream if there is a token, or the pairing form if not. */
  async connect(): Promise<void> {
    const client = this.client_;
    if (client === null) return;
    clearTimeout(this.retryTimer);
    this.setState('connecting', 'Connecting…');
    let health: HealthResponse;
    try {
      health = await client.health();
      if (this.client_ !== client) return; // another endpoint was chosen meanwhile
    } catch (err) {
      if (this.client_ !== client) return;
      // A team endpoint answers health only with a token (docs/SECURITY.md §R1): pair first.
      if (err instanceof P2pzError && err.code === 'E_UNAUTHORIZED') {
        if (this.token === null) {
          this.options.listener.problem(null, false);
          this.setState('unpaired', 'Not paired');
          this.options.listener.pairing(true);
        } else {
          this.forgetToken({ title: 'This plugin is no longer paired with the daemon.', hint: 'Enter the code the daemon printed, or ask for a new one (p2pz pair).', command: null, note: null, pair: true });
        }
        return;
      }
      const permission = err instanceof DaemonUnreachable ? await this.options.permission() : 'unknown';
      const problem = problemFor(err, client.port, permission);
      const note = this.options.host.unreachableNote;
      this.options.listener.problem(err instanceof DaemonUnreachable && problem.command !== null && note !== undefined ? { ...problem, note } : problem, true);
      this.setState('offline', 'Not running');
      this.retryLater();
      return;
    }
    this.options.listener.problem(null, false);
    this.options.listener.health(health);
    if (this.token === null) {
      this.setState('unpaired', 'Not paired');
      this.options.listener.pairing(true);
      return;
    }
    this.openEvents();
  }

  /** Asks health again (models may have been installed, the device may have changed). */
  refreshHealth(): void {
    void this.client_?.health().then((h) => this.options.listener.health(h), () => undefined);
  }

  /** Pairs with the code the daemon printed, as typed (case, hyphens and spaces do not matter); true
   *  when it worked (the problem is shown when not). Text that cannot be a code is not sent. */
  async pair(code: string): Promise<boolean> {
    const client = this.client_;
    if (client === null) return false;
    const canonical = normalizePairingCode(code.trim());
    if (canonical === null) {
      this.options.listener.problem(NOT_A_PAIRING_CODE, false);
      return false;
    }
    try {
      const token = await client.pair(formatPairingCode(canonical));
      this.token = token;
      client.setToken(token);
      this.options.host.saveToken(token);
      this.options.host.notify('Paired with the p2pz daemon');
      this.options.listener.pairing(false);
      this.options.listener.problem(null, false);
      this.setState('connecting', 'Connecting…');
      this.openEvents();
      return true;
    } catch (err) {
      this.options.listener.problem(problemFor(err, client.port), false);
      return false;
    }
  }

  /** The daemon no longer knows the token: forget it and ask for a code again. */
  forgetToken(reason: Problem): void {
    this.token = null;
    this.client_?.setToken(null);
    this.options.host.saveToken(null);
    this.setState('unpaired', 'Not paired');
    this.options.listener.pairing(true);
    this.options.listener.problem(reason, false);
  }

  /** Routes job `jobId`'s events to `onEvent`, and its preview frames to `onFrame`, until the returned
   *  function is called. A lost stream reaches it as an E_SHUTTING_DOWN error event. */
  watch(jobId: string, kind: JobKind, onEvent: (event: JobEvent) => void, onFrame?: (frame: PreviewFrame) => void): () => void {
    const watcher = { kind, onEvent, onFrame };
    this.watchers.set(jobId, watcher);
    return () => {
      if (this.watchers.get(jobId) === watcher) this.watchers.delete(jobId);
    };
  }

  /**
   * Follows job `jobId` until `settle` resolves or rejects `ended` (its frames go to `onFrame`), and
   * until `unwatch` is called. `ended` is handled from the start: the POST and the event stream are
   * two sockets, so a job that fails at once (its model missing) can send its error before the POST
   * answers, and that error must reach whoever awaits `ended` after the submit, not go unhandled.
   */
  follow<T>(
    jobId: string,
    kind: JobKind,
    settle: (event: JobEvent, resolve: (value: T) => void, reject: (error: unknown) => void) => void,
    onFrame?: (frame: PreviewFrame) => void,
  ): { readonly ended: Promise<T>; readonly unwatch: () => void } {
    let unwatch = (): void => undefined;
    const ended = new Promise<T>((resolve, reject) => {
      unwatch = this.watch(jobId, kind, (event) => settle(event, resolve, reject), onFrame);
    });
    ended.catch(() => undefined);
    return { ended, unwatch };
  }

  /** Cancels a job: over the event stream when it is open, else over HTTP. */
  cancel(jobId: string): void {
    if (this.stream !== null) this.stream.send({ v: PROTOCOL_VERSION, type: 'cancel', jobId });
    else void this.client_?.cancelJob(jobId).catch(() => undefined);
  }

  private openEvents(): void {
    const client = this.client_;
    if (client === null) return;
    const previous = this.stream;
    this.stream = null;
    previous?.close();
    // A replaced stream's close is not news: only the current stream's close counts.
    const stream: EventStream = client.openEvents({
      onEvent: (event) => {
        if (this.stream === stream) this.onEvent(event);
      },
      onFrame: (frame) => {
        if (this.stream === stream) this.watchers.get(frame.header.jobId)?.onFrame?.(frame);
      },
      // The job's finished result still arrives: a refused frame only costs the early look.
      onFrameRefused: (error) => console.warn(`p2pz: ${error.code}: ${error.message}`),
      onClose: (code) => {
        if (this.stream === stream) this.onStreamClosed(code);
      },
    });
    this.stream = stream;
  }

  private onStreamClosed(code: number): void {
    this.stream = null;
    for (const [jobId, watcher] of [...this.watchers]) {
      watcher.onEvent({ v: PROTOCOL_VERSION, type: 'error', jobId, kind: watcher.kind, error: new P2pzError('E_SHUTTING_DOWN', 'The connection to the daemon was lost.').toBody() });
    }
    if (this.state_ === 'unpaired') return;
    if (code === 1001 || code === 1006 || this.state_ === 'ready') {
      this.setState('offline', 'Disconnected');
      this.retryLater();
    }
  }

  private onEvent(event: ServerEvent): void {
    switch (event.type) {
      case 'welcome':
        this.options.listener.health(event.health);
        this.setState('ready', 'Ready');
        this.options.listener.problem(null, false);
        this.options.listener.pairing(false);
        this.options.listener.ready();
        return;
      case 'protocol-error':
        if (event.error.code === 'E_UNAUTHORIZED') {
          this.forgetToken({ title: 'This plugin is no longer paired with the daemon.', hint: 'Enter the code the daemon printed, or run the command below for a new one.', command: 'p2pz pair', note: null, pair: true });
        }
        return;
      case 'pong':
        return;
      default:
        this.watchers.get(event.jobId)?.onEvent(event);
    }
  }
}
