// The panel's connection state machine, driven by a scripted DaemonClient: offline and retry, pairing,
// a stored token, a token the daemon no longer knows, a lost stream, and the routing of job events.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PROTOCOL_VERSION, type JobEvent } from '../../../shared/protocol/index.js';
import { CONNECTION_DEFAULTS } from '../../../plugin/ui/connection.js';
import { connectionRig, type ConnectionRig } from './connection-rig.js';
import { healthOf } from './fake-daemon-client.js';

describe('Connection', () => {
  let rig: ConnectionRig;
  afterEach(() => {
    rig?.connection.stop();
    vi.useRealTimers();
  });

  describe('a daemon that does not answer', () => {
    beforeEach(() => {
      vi.useFakeTimers();
    });

    it('says it is not running, with the host\'s note and Try again, and looks again every few seconds', async () => {
      rig = connectionRig({ down: true, unreachableNote: 'It reconnects by itself.' });
      await rig.connection.start(7777, null);
      expect(rig.connection.state).toBe('offline');
      expect(rig.states.map((s) => s.text)).toEqual(['Connecting…', 'Not running']);
      const last = rig.problems.at(-1);
      expect(last?.retry).toBe(true);
      expect(last?.problem?.title).toBe('The p2pz daemon is not running on port 7777.');
      expect(last?.problem?.command).toBe('npm start');
      expect(last?.problem?.note).toBe('It reconnects by itself.');
      expect(rig.client().healthCalls).toBe(1);

      await vi.advanceTimersByTimeAsync(CONNECTION_DEFAULTS.retryMs - 1);
      expect(rig.client().healthCalls).toBe(1);
      await vi.advanceTimersByTimeAsync(1);
      expect(rig.client().healthCalls).toBe(2);
      expect(rig.connection.state).toBe('offline');

      // It comes up: no token yet, so the panel asks for the code and stops looking.
      rig.client().down = false;
      await vi.advanceTimersByTimeAsync(CONNECTION_DEFAULTS.retryMs);
      expect(rig.connection.state).toBe('unpaired');
      expect(rig.states.at(-1)).toEqual({ state: 'unpaired', text: 'Not paired' });
      expect(rig.problems.at(-1)).toEqual({ problem: null, retry: false });
      expect(rig.pairing.at(-1)).toBe(true);
      expect(rig.healths()).toBe(1);
      const calls = rig.client().healthCalls;
      await vi.advanceTimersByTimeAsync(CONNECTION_DEFAULTS.retryMs * 3);
      expect(rig.client().healthCalls).toBe(calls);
      expect(rig.client().streams).toHaveLength(0);
    });

    it('uses the browser-permission advice when the host has no note of its own', async () => {
      rig = connectionRig({ down: true });
      await rig.connection.start(7777, null);
      expect(rig.problems.at(-1)?.problem?.note).toBe('If your browser asks to let Figma reach apps on this device, choose Allow.');
    });
  });

  it('pairs: a wrong code says so and keeps the form; the right one keeps the token and opens the stream', async () => {
    rig = connectionRig();
    await rig.connection.start(7777, null);
    expect(rig.connection.state).toBe('unpaired');

    expect(await rig.connection.pair('7K3Q-MXR8')).toBe(false);
    expect(rig.problems.at(-1)?.problem?.title).toBe('That pairing code is wrong or has expired.');
    expect(rig.problems.at(-1)?.problem?.pair).toBe(true);
    expect(rig.problems.at(-1)?.retry).toBe(false);
    expect(rig.saved).toEqual([]);
    expect(rig.connection.state).toBe('unpaired');

    // Text that cannot be a code (the old 6 digits, a letter outside the alphabet) is never sent.
    for (const typed of ['123456', '7K3Q-MXRU', '7K3Q-MXR9-0']) {
      expect(await rig.connection.pair(typed)).toBe(false);
      expect(rig.problems.at(-1)?.problem?.title).toBe('That is not a pairing code.');
      expect(rig.problems.at(-1)?.problem?.command).toBe('p2pz pair');
    }
    expect(rig.client().pairCodes).toEqual(['7K3Q-MXR8']);

    // Typed as designers do: lower case, no hyphen, o for 0 and l for 1 are read as the code.
    rig.client().code = '7K30-MXR1';
    expect(await rig.connection.pair(' 7k3o mxrl ')).toBe(true);
    expect(rig.client().pairCodes.at(-1)).toBe('7K30-MXR1');
    expect(rig.saved).toEqual(['tok_1']);
    expect(rig.client().token).toBe('tok_1');
    expect(rig.notes).toEqual(['Paired with the p2pz daemon']);
    expect(rig.pairing.at(-1)).toBe(false);
    expect(rig.connection.state).toBe('connecting');
    expect(rig.client().stream.token).toBe('tok_1');

    expect(rig.ready()).toBe(0);
    rig.client().stream.welcome();
    expect(rig.connection.state).toBe('ready');
    expect(rig.states.at(-1)).toEqual({ state: 'ready', text: 'Ready' });
    expect(rig.ready()).toBe(1);
  });

  it('with a stored token goes straight to the stream', async () => {
    rig = connectionRig();
    await rig.connection.start(7777, 'tok_kept');
    expect(rig.client().streams).toHaveLength(1);
    expect(rig.client().stream.token).toBe('tok_kept');
    expect(rig.pairing).toEqual([]);
    rig.client().stream.welcome(healthOf({ models: [] }));
    expect(rig.connection.state).toBe('ready');
  });

  it('forgets a token the daemon refuses and asks for a code; the refused stream\'s close changes nothing', async () => {
    vi.useFakeTimers();
    rig = connectionRig();
    await rig.connection.start(7777, 'tok_revoked');
    const stream = rig.client().stream;
    stream.emit({ v: PROTOCOL_VERSION, type: 'protocol-error', error: { code: 'E_UNAUTHORIZED', message: 'no', hint: 'pair' } });
    expect(rig.connection.state).toBe('unpaired');
    expect(rig.saved).toEqual([null]);
    expect(rig.client().token).toBeNull();
    expect(rig.pairing.at(-1)).toBe(true);
    expect(rig.problems.at(-1)?.problem).toMatchObject({ title: 'This plugin is no longer paired with the daemon.', command: 'p2pz pair', pair: true });

    // The daemon then closes the socket (policy violation): still unpaired, no retry.
    stream.drop(1008);
    expect(rig.connection.state).toBe('unpaired');
    const calls = rig.client().healthCalls;
    await vi.advanceTimersByTimeAsync(CONNECTION_DEFAULTS.retryMs * 2);
    expect(rig.client().healthCalls).toBe(calls);
  });

  it('a lost stream fails the jobs it carried, says Disconnected, and reconnects', async () => {
    vi.useFakeTimers();
    rig = connectionRig();
    await rig.connection.start(7777, 'tok_1');
    rig.client().stream.welcome();
    const seen: JobEvent[] = [];
    rig.connection.watch('job_1_0000', 'render', (e) => seen.push(e));

    rig.client().stream.drop(1006);
    expect(rig.connection.state).toBe('offline');
    expect(rig.states.at(-1)).toEqual({ state: 'offline', text: 'Disconnected' });
    expect(seen).toEqual([{ v: PROTOCOL_VERSION, type: 'error', jobId: 'job_1_0000', kind: 'render', error: { code: 'E_SHUTTING_DOWN', message: 'The p2pz daemon is shutting down. The connection to the daemon was lost.', hint: 'Start it again with `npm start` (or `p2pz serve`).' } }]);

    await vi.advanceTimersByTimeAsync(CONNECTION_DEFAULTS.retryMs);
    expect(rig.client().streams).toHaveLength(2);
    rig.client().stream.welcome();
    expect(rig.connection.state).toBe('ready');
  });

  it('only the current stream\'s close counts: a replaced stream closing later is ignored', async () => {
    rig = connectionRig();
    await rig.connection.start(7777, 'tok_1');
    const first = rig.client().stream;
    expect(await rig.connection.pair('7K3Q-MXR9')).toBe(true); // pairs again: a new stream replaces the first
    expect(first.closed).toBe(true);
    rig.client().stream.welcome();
    first.drop(1006);
    expect(rig.connection.state).toBe('ready');
  });

  it('routes each job\'s events to its watcher only, until unwatched', async () => {
    rig = connectionRig();
    await rig.connection.start(7777, 'tok_1');
    const stream = rig.client().stream;
    stream.welcome();
    const a: string[] = [];
    const b: string[] = [];
    const unwatchA = rig.connection.watch('job_a_0000', 'preview', (e) => a.push(e.type));
    rig.connection.watch('job_b_0000', 'render', (e) => b.push(e.type));
    stream.emit({ v: PROTOCOL_VERSION, type: 'queued', jobId: 'job_a_0000', kind: 'preview', position: 2 });
    stream.emit({ v: PROTOCOL_VERSION, type: 'started', jobId: 'job_b_0000', kind: 'render' });
    stream.emit({ v: PROTOCOL_VERSION, type: 'started', jobId: 'job_other_0000', kind: 'render' });
    stream.emit({ v: PROTOCOL_VERSION, type: 'pong' });
    unwatchA();
    stream.emit({ v: PROTOCOL_VERSION, type: 'started', jobId: 'job_a_0000', kind: 'preview' });
    expect(a).toEqual(['queued']);
    expect(b).toEqual(['started']);
  });

  it('cancels over the stream while it is open, else over HTTP', async () => {
    rig = connectionRig();
    await rig.connection.start(7777, 'tok_1');
    const stream = rig.client().stream;
    stream.welcome();
    rig.connection.cancel('job_1_0000');
    expect(stream.sent).toEqual([{ v: PROTOCOL_VERSION, type: 'cancel', jobId: 'job_1_0000' }]);
    expect(rig.client().cancelled).toEqual([]);
    stream.drop(1001);
    rig.connection.cancel('job_2_0000');
    await vi.waitFor(() => expect(rig.client().cancelled).toEqual(['job_2_0000']));
  });
});
