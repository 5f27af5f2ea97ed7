// shared/protocol/plugin.ts: the sandbox ↔ UI messages and the stored edit record. The record mirrors
// EditParams (edit.ts): every valid edit must be storable, or "Re-run edit" would lose it.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EditParams } from '../../shared/protocol/edit.js';
import { LayerEdit, SandboxMessage, TiledImage, UiMessage } from '../../shared/protocol/plugin.js';
import { PROTOCOL_VERSION } from '../../shared/protocol/version.js';

const v = PROTOCOL_VERSION;

describe('LayerEdit', () => {
  it('stores every edit that EditParams accepts', () => {
    const word = fc.stringMatching(/^[a-z][a-z '-]{0,20}$/);
    fc.assert(
      fc.property(
        fc.record({
          source: word,
          target: word,
          seed: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
          steps: fc.integer({ min: 1, max: 200 }),
          cfg: fc.double({ min: 0, max: 30, noNaN: true }),
          xa: fc.double({ min: 0, max: 10, noNaN: true }),
          size: fc.integer({ min: 1, max: 16 }).map((k) => k * 64),
          editScale: fc.double({ min: -5, max: 5, noNaN: true }),
        }),
        (input) => {
          const edit = EditParams.parse(input);
          const record = { ...edit, kind: 'render', engine: 'diffusion', originalId: '1:2' };
          const stored = LayerEdit.parse(JSON.parse(JSON.stringify(record)));
          expect(stored).toMatchObject({ source: edit.source, target: edit.target, seed: edit.seed, steps: edit.steps, size: edit.size });
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('messages', () => {
  const tile = { x: 0, y: 0, width: 4096, height: 10, bytes: new Uint8Array([1, 2, 3]) };

  it('accepts tiles up to Figma’s 4096 px and refuses larger ones', () => {
    expect(TiledImage.safeParse({ width: 4096, height: 10, tiles: [tile] }).success).toBe(true);
    expect(TiledImage.safeParse({ width: 4097, height: 10, tiles: [{ ...tile, width: 4097 }] }).success).toBe(false);
  });

  it('takes only Uint8Array as bytes', () => {
    const message = { v, type: 'images', requestId: 1, images: [{ nodeId: '1:2', bytes: new Uint8Array(4), mime: 'image/png', read: 'export' }] };
    expect(SandboxMessage.safeParse(message).success).toBe(true);
    const asArray = { ...message, images: [{ ...message.images[0], bytes: [1, 2, 3, 4] }] };
    expect(SandboxMessage.safeParse(asArray).success).toBe(false);
  });

  it('refuses other versions and notify texts of 100 characters or more', () => {
    expect(UiMessage.safeParse({ v, type: 'notify', text: 'ok' }).data).toEqual({ v, type: 'notify', text: 'ok', error: false });
    expect(UiMessage.safeParse({ v: 2, type: 'notify', text: 'ok' }).success).toBe(false);
    expect(UiMessage.safeParse({ v, type: 'notify', text: 'x'.repeat(100) }).success).toBe(false);
  });
});
