// The UI's side of postMessage with the Figma sandbox. Only messages whose source is our parent window
// (Figma's host, which relays the sandbox) are read, and only those that parse as SandboxMessage;
// everything else, such as a forged message from another frame, is dropped (docs/SECURITY.md §R24). Requests that expect
// an answer (read pixels, place results) carry a request id and resolve on the matching reply.
import { SandboxMessage, UiMessage, type UiMessageInput } from '../../shared/protocol/plugin.js';

type Reply = Extract<SandboxMessage, { requestId: number }>;
type Pushed = Exclude<SandboxMessage, { requestId: number }>;
type WithoutRequestId<M> = M extends unknown ? Omit<M, 'requestId'> : never;
/** A request as the panel writes it; the bridge adds the request id. */
export type BridgeRequest = WithoutRequestId<Extract<UiMessageInput, { requestId: number }>>;

export interface Bridge {
  /** Sends a message that needs no answer. */
  send(message: UiMessageInput): void;
  /** Sends a request; resolves with the sandbox's reply, rejects with its error text. */
  request<T extends Reply['type']>(message: BridgeRequest, expect: T): Promise<Extract<Reply, { type: T }>>;
  close(): void;
}

export function createBridge(onPush: (message: Pushed) => void, host: Window = window.parent, self: Window = window): Bridge {
  let nextRequestId = 1;
  const waiting = new Map<number, { expect: string; resolve: (m: Reply) => void; reject: (e: Error) => void }>();

  const post = (message: UiMessageInput): void => {
    // Checked here too, so that a bug in the panel can never send the sandbox something it drops.
    const parsed = UiMessage.parse(message);
    // Figma relays `pluginMessage` to the sandbox; its host origin differs between the web and the
    // desktop app, hence '*'. Nothing secret goes up except the token, to the sandbox's own storage.
    host.postMessage({ pluginMessage: parsed }, '*');
  };

  const onMessage = (event: MessageEvent): void => {
    if (event.source !== host) return;
    const data: unknown = event.data;
    const payload = typeof data === 'object' && data !== null && 'pluginMessage' in data ? (data as { pluginMessage: unknown }).pluginMessage : undefined;
    const parsed = SandboxMessage.safeParse(payload);
    if (!parsed.success) return;
    const message = parsed.data;
    if ('requestId' in message) {
      const pending = waiting.get(message.requestId);
      if (pending === undefined) return;
      waiting.delete(message.requestId);
      if (message.type === 'sandbox-error') pending.reject(new Error(message.message));
      else if (message.type === pending.expect) pending.resolve(message);
      else pending.reject(new Error('The plugin answered unexpectedly.'));
      return;
    }
    onPush(message);
  };
  self.addEventListener('message', onMessage);

  return {
    send: post,
    request: (message, expect) =>
      new Promise((resolve, reject) => {
        const requestId = nextRequestId++;
        waiting.set(requestId, { expect, resolve: resolve as (m: Reply) => void, reject });
        try {
          post({ ...message, requestId } as UiMessageInput);
        } catch (err) {
          waiting.delete(requestId);
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      }),
    close: () => self.removeEventListener('message', onMessage),
  };
}
