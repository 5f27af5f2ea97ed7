// The logger (R21): tokens and absolute paths are scrubbed from every value, errors become a code and
// a message (never a stack), levels filter.
import { describe, expect, it } from 'vitest';
import { createLogger, describeError, scrub } from '../../daemon/log.js';
import { P2pzError } from '../../shared/protocol/index.js';

describe('scrub', () => {
  it.each([
    ['token p2pz_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG ok', 'token <redacted> ok'],
    ['Authorization: Bearer abc.def', 'Authorization: <redacted>'],
    ['Failed to load /usr/lib/x86_64/libcudnn.so.9: not found', 'Failed to load <path>: not found'],
    ['at /tmp/p2pz-abc/models/unet/model.onnx', 'at <path>'],
    ['home is /home/bob/.local/share/p2pz', 'home is <path>'],
    ['C:\\Users\\bob\\AppData\\Local\\p2pz\\x.onnx missing', '<path> missing'],
    ['share \\\\server\\share\\m.onnx', 'share <path>'],
  ])('%s', (input, output) => {
    expect(scrub(input)).toBe(output);
  });

  it('keeps URLs and ordinary text', () => {
    expect(scrub('listening on http://127.0.0.1:7870/v1/health')).toBe('listening on http://127.0.0.1:7870/v1/health');
    expect(scrub('3/4 done, and/or ratio 1:2')).toBe('3/4 done, and/or ratio 1:2');
  });
});

describe('logger', () => {
  it('writes one scrubbed line per event with key=value fields, no stack', () => {
    const lines: string[] = [];
    const log = createLogger({ sink: (l) => lines.push(l), now: () => new Date(0) });
    const err = new Error('cannot open /root/secret/file for p2pz_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG');
    log.error('thing.failed', { ...describeError(err), home: '/home/u/p2pz', n: 3 });
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
