// A Connection on a scripted DaemonClient, with everything it reports recorded (for the connection's
// and the job runner's tests).
import { Connection, type ConnectionState } from '../../../plugin/ui/connection.js';
import type { Problem } from '../../../plugin/ui/problems.js';
import { FakeDaemonClient } from './fake-daemon-client.js';

export interface ConnectionRig {
  readonly connection: Connection;
  readonly client: () => FakeDaemonClient;
  readonly states: { state: ConnectionState; text: string }[];
  readonly problems: { problem: Problem | null; retry: boolean }[];
  readonly pairing: boolean[];
  readonly saved: (string | null)[];
  readonly notes: string[];
  readonly ready: () => number;
  readonly healths: () => number;
}

export function connectionRig(options: { down?: boolean; unreachableNote?: string } = {}): ConnectionRig {
  let client: FakeDaemonClient | null = null;
  const states: ConnectionRig['states'] = [];
  const problems: ConnectionRig['problems'] = [];
  const pairing: boolean[] = [];
  const saved: (string | null)[] = [];
  const notes: string[] = [];
  let ready = 0;
  let healths = 0;
  const connection = new Connection({
    clientId: 'test_abc',
    host: { client: 'test', saveToken: (t) => saved.push(t), notify: (n) => notes.push(n), ...(options.unreachableNote === undefined ? {} : { unreachableNote: options.unreachableNote }) },
    createClient: (port, clientId, token, label) => {
      client = new FakeDaemonClient(port, clientId, token, label);
      client.down = options.down ?? false;
      return client;
    },
    permission: async () => 'prompt',
    listener: {
      status: (state, text) => states.push({ state, text }),
      problem: (problem, retry) => problems.push({ problem, retry }),
      health: () => healths++,
      pairing: (shown) => pairing.push(shown),
      ready: () => ready++,
    },
  });
  return {
    connection,
    client: () => {
      if (client === null) throw new Error('no client yet');
      return client;
    },
    states,
    problems,
    pairing,
    saved,
    notes,
    ready: () => ready,
    healths: () => healths,
  };
}

/** The unhandled promise rejections while `run` runs, and one macrotask after it (when Node reports them). */
export async function unhandledRejectionsDuring(run: () => Promise<unknown>): Promise<unknown[]> {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  try {
    await run();
    await new Promise((resolve) => setTimeout(resolve, 10));
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
  return unhandled;
}
