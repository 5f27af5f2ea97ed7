// Which selected layers the sandbox can edit, and how their pixels are read (image fill or export).
import { describe, expect, it } from 'vitest';
import { describeSelection, exportScale, readLayerImage } from '../../../plugin/figma/selection.js';
import { createFigmaShim } from '../../browser/figma-shim.js';
import { gifHeader, png } from './fixtures.js';

describe('describeSelection', () => {
  it('asks for a selection when nothing is selected', () => {
    const { items, problem } = describeSelection([]);
    expect(items).toEqual([]);
    expect(problem).toBe('Select an image layer (or any layer) to edit.');
  });

  it('reads a plain image layer from its fill and anything else by export', async () => {
    const shim = createFigmaShim();
    const hash = shim.addImage(await png(8, 6));
    const photo = shim.rectangle({ name: 'Photo', x: 0, y: 0, width: 80, height: 60, fills: [{ type: 'IMAGE', scaleMode: 'FILL', imageHash: hash }] });
    const card = shim.frame({ name: 'Card', x: 100, y: 0, width: 40, height: 30 });
    shim.rectangle({ name: 'inside', x: 0, y: 0, width: 10, height: 10, parent: card, fills: [{ type: 'IMAGE', scaleMode: 'FILL', imageHash: hash }] });
    const solid = shim.rectangle({ name: 'Solid', x: 0, y: 0, width: 5, height: 5, fills: [{ type: 'SOLID', color: { r: 1, g: 0, b: 0 } }] });
    const { items, problem } = describeSelection([photo, card, solid]);
    expect(problem).toBeNull();
    expect(items).toEqual([
      { nodeId: photo.id, name: 'Photo', width: 80, height: 60, read: 'image-fill' },
      { nodeId: card.id, name: 'Card', width: 40, height: 30, read: 'export' },
      { nodeId: solid.id, name: 'Solid', width: 5, height: 5, read: 'export' },
    ]);
  });

  it('treats an image fill under a second visible fill as a rendered layer', async () => {
    const shim = createFigmaShim();
    const hash = shim.addImage(await png(4, 4));
    const tinted = shim.rectangle({
      name: 'Tinted',
      x: 0,
      y: 0,
      width: 10,
      height: 10,
      fills: [
        { type: 'IMAGE', scaleMode: 'FILL', imageHash: hash },
        { type: 'SOLID', color: { r: 0, g: 0, b: 1 }, opacity: 0.3 },
      ],
    });
    const hiddenTint = shim.rectangle({
      name: 'Hidden tint',
      x: 0,
      y: 0,
      width: 10,
      height: 10,
      fills: [
        { type: 'IMAGE', scaleMode: 'FILL', imageHash: hash },
        { type: 'SOLID', color: { r: 0, g: 0, b: 1 }, visible: false },
      ],
    });
    expect(describeSelection([tinted, hiddenTint]).items.map((i) => i.read)).toEqual(['export', 'image-fill']);
  });

  it('skips hidden layers and says so when nothing is left', () => {
    const shim = createFigmaShim();
    const hidden = shim.rectangle({ name: 'Hidden', x: 0, y: 0, width: 10, height: 10 });
    hidden.visible = false;
    const { items, problem } = describeSelection([hidden]);
    expect(items).toEqual([]);
    expect(problem).toBe('The selected layers are hidden or empty. Select a visible layer with some size.');
  });

  it('refuses a batch larger than the limit', () => {
    const shim = createFigmaShim();
    const many = Array.from({ length: 17 }, (_, i) => shim.rectangle({ name: `R${i}`, x: 0, y: 0, width: 10, height: 10 }));
    const { items, problem } = describeSelection(many);
    expect(items).toEqual([]);
    expect(problem).toBe('Select at most 16 layers at a time (17 are selected).');
  });
});

describe('exportScale', () => {
  it('enlarges small layers towards 512 px, at most 4×, and keeps large ones within 4096 px', () => {
    expect(exportScale(256, 128)).toBe(2);
    expect(exportScale(64, 64)).toBe(4); // 8× would reach 512; capped at 4×
    expect(exportScale(1000, 500)).toBe(1);
    expect(exportScale(8192, 100)).toBe(0.5);
  });
});

describe('readLayerImage', () => {
  it('returns the original image bytes of an image fill', async () => {
    const shim = createFigmaShim();
    const bytes = await png(12, 9);
    const hash = shim.addImage(bytes);
    const photo = shim.rectangle({ name: 'Photo', x: 0, y: 0, width: 120, height: 90, fills: [{ type: 'IMAGE', scaleMode: 'FILL', imageHash: hash }] });
    const read = await readLayerImage(shim.figma, photo);
    expect(read).toEqual({ nodeId: photo.id, bytes, mime: 'image/png', read: 'image-fill' });
    expect(shim.exports).toEqual([]);
  });

  it('exports a GIF fill as PNG, since the daemon does not read GIF', async () => {
    const shim = createFigmaShim();
    const hash = shim.addImage(gifHeader(10, 10));
    const gif = shim.rectangle({ name: 'Gif', x: 0, y: 0, width: 100, height: 50, fills: [{ type: 'IMAGE', scaleMode: 'FILL', imageHash: hash }] });
    const exported = await png(512, 256);
    shim.setExportBytes(gif, exported);
    const read = await readLayerImage(shim.figma, gif);
    expect(read).toEqual({ nodeId: gif.id, bytes: exported, mime: 'image/png', read: 'export' });
    expect(shim.exports).toEqual([{ nodeId: gif.id, settings: { format: 'PNG', constraint: { type: 'SCALE', value: 4 }, useAbsoluteBounds: true } }]);
  });

  it('exports other layers at the scale that brings them to the working size', async () => {
    const shim = createFigmaShim();
    const card = shim.frame({ name: 'Card', x: 0, y: 0, width: 256, height: 200 });
    shim.setExportBytes(card, await png(512, 400));
    const read = await readLayerImage(shim.figma, card);
    expect(read.read).toBe('export');
    expect(shim.exports[0]?.settings).toEqual({ format: 'PNG', constraint: { type: 'SCALE', value: 2 }, useAbsoluteBounds: true });
  });
});
