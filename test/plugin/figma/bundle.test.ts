// The built sandbox (dist/plugin/code.js, made by the suite's global setup) stays small and runs: it
// imports full zod nowhere (shared/protocol/plugin.ts uses zod/mini; version.ts gets a stand-in), so a
// missing stand-in member or a stray full-zod import shows up here.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../../../shared/protocol/version.js';
import { createFigmaShim } from '../../browser/figma-shim.js';

const code = readFileSync(new URL('../../../dist/plugin/code.js', import.meta.url), 'utf8');

describe('dist/plugin/code.js', () => {
  it('is a small bundle (full zod alone would be ~450 KB)', () => {
    expect(code.length).toBeLessThan(64 * 1024);
  });

  it('starts on the stub, answers the UI and drops what does not parse', async () => {
    const shim = createFigmaShim();
    shim.storage.set('p2pz.token', 'abc');
    // Figma runs the bundle as a script with `figma`, `__html__` and `fetch` in scope.
    new Function('figma', '__html__', 'fetch', code)(shim.figma, '<html>ui</html>', undefined);
    shim.run('open');
    for (let i = 0; i < 100 && shim.toUi.length < 2; i++) await new Promise((r) => setTimeout(r, 2));
    expect(shim.toUi[0]).toMatchObject({ v: PROTOCOL_VERSION, type: 'init', token: 'abc', command: 'open' });
    expect(shim.toUi[1]).toMatchObject({ v: PROTOCOL_VERSION, type: 'selection', items: [] });
    shim.sendToSandbox({ v: PROTOCOL_VERSION, type: 'notify', text: 'Hello', error: false });
    shim.sendToSandbox({ v: PROTOCOL_VERSION + 1, type: 'notify', text: 'Other version' });
    await new Promise((r) => setTimeout(r, 5));
    expect(shim.notifications).toEqual([{ text: 'Hello', error: false }]);
  });
});
