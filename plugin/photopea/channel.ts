// The page's side of Photopea's messaging: a script is a string posted to the parent window (Photopea),
// which runs it and answers with what the script sent (`echoToOE` strings, `saveToOE` ArrayBuffers)
// followed by "done". Scripts run strictly one at a time: each waits for the previous one's answer.
// Each script is framed by begin/end markers echoed with a per-run number, so a late answer of a script
// that timed out can never be taken for the next one's. Only messages from the parent window with
// Photopea's origin are read; everything else is ignored (docs/SECURITY.md §R24).
//
// Photopea runs scripts in its own interpreter (docs/PHOTOPEA.md, test/photopea/photopea-interpreter.ts),
// where a script that throws gets no "done" at all and `finally` never runs. So the step's code is the
// body of a function declaration called inside try/catch: an error is caught, echoed with a `failed`
// marker and reported at once (PhotopeaScriptError); the end marker is a plain statement after it. An
// error the catch cannot see (Photopea stopping the script) still ends at the timeout, and is told
// apart from a Photopea that never answered by the begin marker.
import { photopeaScript, type PhotopeaScript } from './script.js';

export const CHANNEL_DEFAULTS = Object.freeze({
  /** A script that has not answered "done" within this time fails. */
  timeoutMs: 20_000,
  /** Prefix of the marker strings that frame each script's answer. */
  marker: 'p2pz-photopea',
});

/** What one script sent back before "done". */
export interface ScriptAnswer {
  readonly strings: readonly string[];
  readonly buffers: readonly ArrayBuffer[];
}

export class PhotopeaTimeout extends Error {
  constructor() {
    super('Photopea did not answer in time.');
    this.name = 'PhotopeaTimeout';
  }
}

/** A step's script failed inside Photopea (its error, when Photopea let the script catch it). */
export class PhotopeaScriptError extends Error {
  constructor(readonly detail: string | null) {
    super(
      detail === null
        ? 'Photopea stopped the step with an error and sent no answer. Reload Photopea and try again.'
        : `Photopea could not run a step: ${detail.slice(0, 300)}. Reload Photopea and try again.`,
    );
    this.name = 'PhotopeaScriptError';
  }
}

interface Pending {
  readonly run: number;
  phase: 'before' | 'inside' | 'after';
  /** The error the step's catch echoed, if any. */
  failure: string | null;
  readonly strings: string[];
  readonly buffers: ArrayBuffer[];
  readonly resolve: (answer: ScriptAnswer) => void;
  readonly reject: (err: Error) => void;
}

export class PhotopeaChannel {
  private tail: Promise<unknown> = Promise.resolve();
  private pending: Pending | null = null;
  private runs = 0;
  private readonly onMessage = (event: MessageEvent): void => this.receive(event);

  constructor(
    private readonly parent: Window,
    private readonly self: Window,
    /** The only origin whose messages are read, and the only one scripts are posted to. */
    readonly origin: string,
    private readonly timeoutMs: number = CHANNEL_DEFAULTS.timeoutMs,
  ) {
    self.addEventListener('message', this.onMessage);
  }

  /** Runs a script after every script sent before it has answered (or timed out). */
  run(script: PhotopeaScript, timeoutMs: number = this.timeoutMs): Promise<ScriptAnswer> {
    const next = this.tail.then(() => this.execute(script, timeoutMs));
    this.tail = next.catch(() => undefined);
    return next;
  }

  close(): void {
    this.self.removeEventListener('message', this.onMessage);
  }

  private execute(script: PhotopeaScript, timeoutMs: number): Promise<ScriptAnswer> {
    const run = ++this.runs;
    const marker = `${CHANNEL_DEFAULTS.marker}:${run}:`;
    // Only a function declaration defines a function in Photopea's interpreter, and only top-level
    // statements after the try are sure to run (no finally).
    const head = photopeaScript`app.echoToOE(${`${marker}begin`});
function p2pzStep() {
`;
    const tail = photopeaScript`
}
var p2pzFailure = null;
try { p2pzStep(); } catch (e) { p2pzFailure = String(e); }
if (p2pzFailure != null) app.echoToOE(${`${marker}failed:`} + p2pzFailure);
app.echoToOE(${`${marker}end`});`;
    return new Promise<ScriptAnswer>((resolve, reject) => {
      const timer = setTimeout(() => {
        const pending = this.pending;
        if (pending?.run === run) this.pending = null;
        reject(pending?.run === run && pending.phase !== 'before' ? new PhotopeaScriptError(pending.failure) : new PhotopeaTimeout());
      }, timeoutMs);
      this.pending = {
        run,
        phase: 'before',
        failure: null,
        strings: [],
        buffers: [],
        resolve: (answer) => {
          clearTimeout(timer);
          resolve(answer);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      this.parent.postMessage(`${head.source}${script.source}${tail.source}`, this.origin);
    });
  }

  private receive(event: MessageEvent): void {
    if (event.source !== this.parent || event.origin !== this.origin) return;
    const pending = this.pending;
    if (pending === null) return;
    const data: unknown = event.data;
    const prefix = `${CHANNEL_DEFAULTS.marker}:${pending.run}:`;
    if (typeof data === 'string') {
      if (data === `${prefix}begin`) pending.phase = 'inside';
      else if (data.startsWith(`${prefix}failed:`) && pending.phase === 'inside') pending.failure = data.slice(`${prefix}failed:`.length);
      else if (data === `${prefix}end` && pending.phase === 'inside') pending.phase = 'after';
      else if (data === 'done' && pending.phase === 'after') {
        this.pending = null;
        if (pending.failure !== null) pending.reject(new PhotopeaScriptError(pending.failure));
        else pending.resolve({ strings: pending.strings, buffers: pending.buffers });
      } else if (pending.phase === 'inside' && !data.startsWith(`${CHANNEL_DEFAULTS.marker}:`)) pending.strings.push(data);
    } else if (data instanceof ArrayBuffer && pending.phase !== 'before') {
      // saveToOE's bytes may arrive after the script's last echo, but always before its "done".
      pending.buffers.push(data);
    }
  }
}
