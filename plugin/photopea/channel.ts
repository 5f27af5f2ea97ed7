// The page's side of Photopea's messaging: a script is a string posted to the parent window (Photopea),
// which runs it and answers with what the script sent (`echoToOE` strings, `saveToOE` ArrayBuffers)
// followed by "done". Scripts run strictly one at a time: each waits for the previous one's answer.
// Each script is framed by begin/end markers echoed with a per-run number, so a late answer of a script
// that timed out can never be taken for the next one's. Only messages from the parent window with
// Photopea's origin are read; everything else is ignored (R24).
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

interface Pending {
  readonly run: number;
  phase: 'before' | 'inside' | 'after';
  readonly strings: string[];
  readonly buffers: ArrayBuffer[];
  readonly resolve: (answer: ScriptAnswer) => void;
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
    const begin = photopeaScript`app.echoToOE(${`${CHANNEL_DEFAULTS.marker}:${run}:begin`});\n`;
    const end = photopeaScript`\napp.echoToOE(${`${CHANNEL_DEFAULTS.marker}:${run}:end`});`;
    return new Promise<ScriptAnswer>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending?.run === run) this.pending = null;
        reject(new PhotopeaTimeout());
      }, timeoutMs);
      this.pending = {
        run,
        phase: 'before',
        strings: [],
        buffers: [],
        resolve: (answer) => {
          clearTimeout(timer);
          resolve(answer);
        },
      };
      // A script that throws still answers "done", without the end marker: the try/finally keeps it.
      this.parent.postMessage(`${begin.source}try {\n${script.source}\n} finally {${end.source}\n}`, this.origin);
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
      else if (data === `${prefix}end` && pending.phase === 'inside') pending.phase = 'after';
      else if (data === 'done' && pending.phase === 'after') {
        this.pending = null;
        pending.resolve({ strings: pending.strings, buffers: pending.buffers });
      } else if (pending.phase === 'inside' && !data.startsWith(`${CHANNEL_DEFAULTS.marker}:`)) pending.strings.push(data);
    } else if (data instanceof ArrayBuffer && pending.phase !== 'before') {
      // saveToOE's bytes may arrive after the script's last echo, but always before its "done".
      pending.buffers.push(data);
    }
  }
}
