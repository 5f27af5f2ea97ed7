// Photopea as the plugin page's parent window, in Node: scripts the page posts run in the models of
// Photopea's interpreter and document (photopea-messaging.ts), one at a time in arrival order, and
// their messages are delivered to the page's window as Photopea's would be. `saveToOE` answers the
// visible layers' names as JSON bytes (the pixels are the browser test's concern), and `app.open`
// places the PNG of a data: URL after "done", at its size and DPI.
import { PHOTOPEA_ORIGIN } from '../../shared/protocol/index.js';
import type { PhotopeaDocumentModel } from './photopea-document.js';
import { answerScript, dataUrlBytes, pngInfo } from './photopea-messaging.js';

export interface NodePhotopea {
  readonly parent: Window;
  readonly self: Window;
  /** Every script posted, and the error of each that threw. */
  readonly scripts: string[];
  readonly errors: string[];
  /** Visible layer names at each export. */
  readonly exports: string[][];
  /** Every string the scripts echoed. */
  readonly echoes: string[];
}

export function nodePhotopea(model: PhotopeaDocumentModel<null>): NodePhotopea {
  const listeners: Array<(e: MessageEvent) => void> = [];
  const scripts: string[] = [];
  const errors: string[] = [];
  const exports: string[][] = [];
  const echoes: string[] = [];
  let queue: Promise<void> = Promise.resolve();
  const parent = {
    postMessage(script: unknown, target: string) {
      if (target !== PHOTOPEA_ORIGIN || typeof script !== 'string') return;
      queue = queue.then(async () => {
        await new Promise((resolve) => setTimeout(resolve, 1));
        scripts.push(script);
        const answer = answerScript(model, script, () => {
          const names = model.all().filter((l) => l.visible && l.layers === undefined).map((l) => l.name);
          exports.push(names);
          return Promise.resolve(new TextEncoder().encode(JSON.stringify(names)).buffer as ArrayBuffer);
        });
        if (answer.outcome.error !== null) errors.push(answer.outcome.error);
        for (const message of answer.messages) {
          const data = await message;
          if (typeof data === 'string') echoes.push(data);
          deliver(data);
        }
        for (const url of answer.opens) {
          const info = pngInfo(dataUrlBytes(url));
          setTimeout(() => model.place(null, info.width, info.height, info.dpi), 20);
        }
      });
    },
  } as unknown as Window;
  const self = {
    addEventListener: (_type: string, l: (e: MessageEvent) => void) => listeners.push(l),
    removeEventListener: (_type: string, l: (e: MessageEvent) => void) => listeners.splice(listeners.indexOf(l), 1),
  } as unknown as Window;
  const deliver = (data: unknown): void => {
    const event = { data, source: parent, origin: PHOTOPEA_ORIGIN } as unknown as MessageEvent;
    for (const l of [...listeners]) l(event);
  };
  return { parent, self, scripts, errors, exports, echoes };
}
