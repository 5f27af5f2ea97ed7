// The Photopea script channel: scripts go only to the parent, with Photopea's origin as the target;
// answers are read only from the parent with that origin; scripts run one at a time; a script that
// timed out cannot lend its late answer to the next one; and a parent origin other than Photopea's is
// honoured only for loopback test hosts.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CHANNEL_DEFAULTS, PhotopeaChannel, PhotopeaScriptError, PhotopeaTimeout } from '../../plugin/photopea/channel.js';
import { expectedParentOrigin } from '../../plugin/photopea/parent-origin.js';
import { photopeaScript } from '../../plugin/photopea/script.js';

const PHOTOPEA = 'https://www.photopea.com';

/** A parent window that records posted scripts, and the page's window that receives messages. */
function windows() {
  const posted: Array<{ script: string; target: string }> = [];
  const parent = { postMessage: (script: string, target: string) => posted.push({ script, target }) };
  const listeners: Array<(e: MessageEvent) => void> = [];
  const self = {
    addEventListener: (_type: string, l: (e: MessageEvent) => void) => listeners.push(l),
    removeEventListener: (_type: string, l: (e: MessageEvent) => void) => listeners.splice(listeners.indexOf(l), 1),
  };
  const deliver = (data: unknown, from: { source?: unknown; origin?: string } = {}): void => {
    const event = { data, source: 'source' in from ? from.source : parent, origin: from.origin ?? PHOTOPEA } as unknown as MessageEvent;
    for (const l of [...listeners]) l(event);
  };
  return { parent: parent as unknown as Window, self: self as unknown as Window, posted, deliver, listeners };
}

/** What Photopea answers to the n-th script that echoes `strings` (and sends `buffers`). */
function answer(deliver: (data: unknown) => void, run: number, strings: string[] = [], buffers: ArrayBuffer[] = []): void {
  deliver(`${CHANNEL_DEFAULTS.marker}:${run}:begin`);
  for (const s of strings) deliver(s);
  deliver(`${CHANNEL_DEFAULTS.marker}:${run}:end`);
  for (const b of buffers) deliver(b);
  deliver('done');
}

afterEach(() => {
  vi.useRealTimers();
});

describe('PhotopeaChannel', () => {
  it('posts framed scripts to the parent with Photopea as the target origin and collects the answer', async () => {
    const w = windows();
    const channel = new PhotopeaChannel(w.parent, w.self, PHOTOPEA);
    const result = channel.run(photopeaScript`app.echoToOE(${'hi'});`);
    await Promise.resolve();
    expect(w.posted).toHaveLength(1);
    expect(w.posted[0]?.target).toBe(PHOTOPEA);
    expect(w.posted[0]?.script).toContain('app.echoToOE(("hi"));');
    expect(w.posted[0]?.script).toMatch(/^app\.echoToOE\(\("p2pz-photopea:1:begin"\)\);/);
    const png = new ArrayBuffer(8);
    answer(w.deliver, 1, ['hi'], [png]);
    await expect(result).resolves.toEqual({ strings: ['hi'], buffers: [png] });
    channel.close();
    expect(w.listeners).toHaveLength(0);
  });

  it('frames the step for Photopea’s interpreter: a function declaration in try/catch, markers as plain statements', async () => {
    const w = windows();
    const channel = new PhotopeaChannel(w.parent, w.self, PHOTOPEA);
    void channel.run(photopeaScript`step();`);
    await Promise.resolve();
    const script = w.posted[0]?.script ?? '';
    expect(script).toContain('function p2pzStep() {\nstep();\n}');
    expect(script).toContain('try { p2pzStep(); } catch (e) { p2pzFailure = String(e); }');
    expect(script).not.toMatch(/finally|=\s*function|=>/);
    expect(script.trimEnd().endsWith('app.echoToOE(("p2pz-photopea:1:end"));')).toBe(true);
    channel.close();
  });

  it('rejects at once with the error the step’s catch echoed', async () => {
    const w = windows();
    const channel = new PhotopeaChannel(w.parent, w.self, PHOTOPEA);
    const result = channel.run(photopeaScript`x();`);
    await Promise.resolve();
    answer(w.deliver, 1, [`${CHANNEL_DEFAULTS.marker}:1:failed:TypeError: x is not a function`]);
    await expect(result).rejects.toThrow(new PhotopeaScriptError('TypeError: x is not a function').message);
  });

  it('tells a step that began but never ended (Photopea stopped it) from a Photopea that never answered', async () => {
    vi.useFakeTimers();
    const w = windows();
    const channel = new PhotopeaChannel(w.parent, w.self, PHOTOPEA, 1_000);
    const silent = channel.run(photopeaScript`x();`);
    const silentFailed = expect(silent).rejects.toBeInstanceOf(PhotopeaTimeout);
    await vi.advanceTimersByTimeAsync(1_001);
    await silentFailed;
    const stopped = channel.run(photopeaScript`y();`);
    const stoppedFailed = expect(stopped).rejects.toThrow(/Photopea stopped the step with an error/);
    await vi.advanceTimersByTimeAsync(1);
    w.deliver(`${CHANNEL_DEFAULTS.marker}:2:begin`);
    await vi.advanceTimersByTimeAsync(1_001);
    await stoppedFailed;
  });

  it('ignores messages from other frames and other origins', async () => {
    const w = windows();
    const channel = new PhotopeaChannel(w.parent, w.self, PHOTOPEA);
    const result = channel.run(photopeaScript`x();`);
    await Promise.resolve();
    const forged = (data: unknown): void => {
      w.deliver(data, { source: {}, origin: PHOTOPEA });
      w.deliver(data, { origin: 'https://attacker.example' });
    };
    forged(`${CHANNEL_DEFAULTS.marker}:1:begin`);
    forged('forged');
    forged(`${CHANNEL_DEFAULTS.marker}:1:end`);
    forged('done');
    let settled = false;
    void result.then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 10));
    expect(settled).toBe(false);
    answer(w.deliver, 1, ['real']);
    await expect(result).resolves.toEqual({ strings: ['real'], buffers: [] });
  });

  it('runs one script at a time, in order', async () => {
    const w = windows();
    const channel = new PhotopeaChannel(w.parent, w.self, PHOTOPEA);
    const first = channel.run(photopeaScript`first();`);
    const second = channel.run(photopeaScript`second();`);
    await new Promise((r) => setTimeout(r, 5));
    expect(w.posted.map((p) => /(first|second)\(\)/.exec(p.script)?.[1])).toEqual(['first']);
    answer(w.deliver, 1, ['one']);
    await expect(first).resolves.toMatchObject({ strings: ['one'] });
    await new Promise((r) => setTimeout(r, 5));
    expect(w.posted.map((p) => /(first|second)\(\)/.exec(p.script)?.[1])).toEqual(['first', 'second']);
    answer(w.deliver, 2, ['two']);
    await expect(second).resolves.toMatchObject({ strings: ['two'] });
  });

  it('times out, and the late answer of the timed-out script is not taken for the next one', async () => {
    vi.useFakeTimers();
    const w = windows();
    const channel = new PhotopeaChannel(w.parent, w.self, PHOTOPEA, 1_000);
    const slow = channel.run(photopeaScript`slow();`);
    const slowFailed = expect(slow).rejects.toBeInstanceOf(PhotopeaTimeout);
    await vi.advanceTimersByTimeAsync(1_001);
    await slowFailed;
    const next = channel.run(photopeaScript`next();`);
    await vi.advanceTimersByTimeAsync(1);
    answer(w.deliver, 1, ['late answer of run 1']);
    let settled = false;
    void next.then(() => (settled = true));
    await vi.advanceTimersByTimeAsync(1);
    expect(settled).toBe(false);
    answer(w.deliver, 2, ['answer of run 2']);
    await expect(next).resolves.toEqual({ strings: ['answer of run 2'], buffers: [] });
  });
});

describe('expectedParentOrigin', () => {
  it('is Photopea unless the daemon’s own origin (by a loopback name, on the page’s own port) is asked for', () => {
    expect(expectedParentOrigin('', 7870)).toBe(PHOTOPEA);
    expect(expectedParentOrigin('?parentOrigin=http%3A%2F%2F127.0.0.1%3A7870', 7870)).toBe('http://127.0.0.1:7870');
    expect(expectedParentOrigin('?parentOrigin=http://localhost:7870', 7870)).toBe('http://localhost:7870');
    // Another port is another site, which the daemon refuses too (origin.ts).
    for (const foreign of ['http://localhost:8080', 'http://127.0.0.1:5173', 'http://localhost:78700', 'http://localhost:787', 'https://attacker.example', 'http://localhost.attacker.example:7870', 'http://127.0.0.1:7870/x', 'http://127.0.0.1', '*', 'null', 'https://127.0.0.1:7870', 'http://[::1]:7870']) {
      expect({ foreign, got: expectedParentOrigin(`?parentOrigin=${encodeURIComponent(foreign)}`, 7870) }).toEqual({ foreign, got: PHOTOPEA });
    }
  });
});
