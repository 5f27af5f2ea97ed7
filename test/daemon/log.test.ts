// The logger (docs/SECURITY.md §R21): tokens and absolute paths are scrubbed from every value, errors become a code and
// a message (never a stack), levels filter.
import { describe, expect, it } from 'vitest';
import { tmpdir } from 'node:os';
import { createLogger, defaultScrubRoots, describeError, scrub } from '../../daemon/log.js';
import { P2pzError } from '../../shared/protocol/index.js';

describe('scrub', () => {
  it.each([
    ['token p2pz_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG ok', 'token <redacted> ok'],
    ['Authorization: Bearer abc.def', 'Authorization: <redacted>'],
    ['Failed to load /usr/lib/x86_64/libcudnn.so.9: not found', 'Failed to load <path>: not found'],
    ['at /var/p2pz-abc/models/unet/model.onnx', 'at <path>'],
    ['home is /home/bob/.local/share/p2pz', 'home is <path>'],
    ['C:\\Users\\bob\\AppData\\Local\\p2pz\\x.onnx missing', '<path> missing'],
    ['share \\\\server\\share\\m.onnx', 'share <path>'],
    ['Load model from /home/josé/p2pz/x.onnx failed', 'Load model from <path> failed'],
    ['Load /Users/John Smith/Library/Application Support/p2pz/models/u.onnx failed', 'Load <path> failed'],
    ['at /tmp/x failed now', 'at <path> failed now'],
    ['C:\\Users\\Jane Doe\\AppData\\Local\\p2pz\\m.onnx missing', '<path> missing'],
    ['at file:///opt/p2pz/dist/daemon/worker.js:12:7', 'at <path>'],
    ['    at run (/srv/p2pz/dist/daemon/worker.js:40:3)', '    at run (<path>:40:3)'],
  ])('%s (generic patterns only)', (input, output) => {
    expect(scrub(input, [])).toBe(output);
  });

  const ROOTS = [
    { label: '<data>', path: '/Users/John Smith/Library/Application Support/p2pz' },
    { label: '<home>', path: '/Users/John Smith' },
    { label: '<home>', path: '/home/josé' },
    { label: '<data>', path: 'C:\\Users\\Zoë Ng\\AppData\\Local\\p2pz' },
  ];
  it.each([
    ['Load model from /Users/John Smith/Library/Application Support/p2pz/models/unet/model.onnx failed: x', 'Load model from <data>/models/unet/model.onnx failed: x'],
    ['/home/josé/p2pz/x', '<home>/p2pz/x'],
    ['at file:///Users/John%20Smith/Library/Application%20Support/p2pz/dist/w.js:3:4', 'at <data>/dist/w.js:3:4'],
    ['at file:///home/jos%C3%A9/w.js:3:4', 'at <home>/w.js:3:4'],
    ['see /Users/John Smith/Documents', 'see <home>/Documents'],
    ['C:\\Users\\Zoë Ng\\AppData\\Local\\p2pz\\models\\m.onnx missing', '<data>\\models\\m.onnx missing'],
    ['C:/Users/Zoë Ng/AppData/Local/p2pz/models/m.onnx missing', '<data>/models/m.onnx missing'],
    ['/home/joséphine/x and /Users/John Smithson/y', '<path> and <path>'],
  ])('%s (known roots first)', (input, output) => {
    expect(scrub(input, ROOTS)).toBe(output);
  });

  it('keeps URLs and ordinary text', () => {
    expect(scrub('listening on http://127.0.0.1:7870/v1/health')).toBe('listening on http://127.0.0.1:7870/v1/health');
    expect(scrub('3/4 done, and/or ratio 1:2')).toBe('3/4 done, and/or ratio 1:2');
  });

  it("knows this process's home and temp folders without being told", () => {
    const roots = defaultScrubRoots();
    expect(roots.map((r) => r.label)).toEqual(expect.arrayContaining(['<data>', '<home>', '<checkout>', '<temp>']));
    expect(scrub(`${tmpdir()}/p2pz-x/a b/c.onnx`)).toBe('<temp>/p2pz-x/a b/c.onnx');
    expect(scrub(`cwd ${process.cwd()}/daemon/log.ts`)).toBe('cwd <checkout>/daemon/log.ts');
  });
});

describe('logger', () => {
  it('writes one scrubbed line per event with key=value fields, no stack', () => {
    const lines: string[] = [];
    const log = createLogger({ sink: (l) => lines.push(l), now: () => new Date(0) });
    const err = new Error('cannot open /srv/secret/file for p2pz_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG');
    log.error('thing.failed', { ...describeError(err), home: '/srv/u/p2pz', n: 3 });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toBe('1970-01-01T00:00:00.000Z error thing.failed error=Error detail="cannot open <path> for <redacted>" home=<path> n=3');
    expect(lines[0]).not.toContain('    at ');
  });

  it('describes P2pzErrors by their code', () => {
    expect(describeError(new P2pzError('E_TIMEOUT'))).toEqual({ error: 'E_TIMEOUT', detail: 'The operation took too long and was stopped.' });
    const sys = Object.assign(new Error('listen EADDRINUSE'), { code: 'EADDRINUSE' });
    expect(describeError(sys).error).toBe('EADDRINUSE');
  });

  it('filters by level and cuts long values', () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'warn', sink: (l) => lines.push(l) });
    log.info('quiet');
    log.debug('quieter');
    log.warn('loud', { v: 'x'.repeat(1000) });
    expect(lines).toHaveLength(1);
    expect(lines[0]?.length).toBeLessThan(400);
  });
});
