// Result layers: above the original, same parent, position, size and rotation, named after the edit,
// carrying the edit record and relaunch data; the mask as a hidden layer or a luminance-masked group;
// results past 4096 px as tiles; one undo removes one result.
import { describe, expect, it } from 'vitest';
import type { LayerEdit, PlaceItem, TiledImage } from '../../../shared/protocol/plugin.js';
import { readLayerEdit } from '../../../plugin/figma/layer-edit.js';
import { placeResult } from '../../../plugin/figma/place.js';
import { createFigmaShim, FIGMA_ERRORS, layerTransform, type FigmaShim } from '../../browser/figma-shim.js';
import { png } from './fixtures.js';

const EDIT: LayerEdit = { source: 'cat', target: 'dog', seed: 42, steps: 50, cfg: 5, xa: 0.1, size: 512, editScale: 1, kind: 'render', engine: 'diffusion', originalId: '0:0' };

async function whole(width: number, height: number, rgb: [number, number, number] = [10, 20, 30]): Promise<TiledImage> {
  return { width, height, tiles: [{ x: 0, y: 0, width, height, bytes: await png(width, height, rgb) }] };
}

function expectTransform(actual: Transform, expected: Transform): void {
  for (let r = 0; r < 2; r++) for (let c = 0; c < 3; c++) expect(actual[r]?.[c]).toBeCloseTo(expected[r]?.[c] ?? NaN, 9);
}

async function imageLayer(shim: FigmaShim, parent?: FrameNode) {
  const hash = shim.addImage(await png(16, 12));
  const paint: ImagePaint = { type: 'IMAGE', scaleMode: 'CROP', imageHash: hash, imageTransform: [[0.5, 0, 0.25], [0, 0.5, 0.1]] };
  return shim.rectangle({ name: 'Cat photo', x: 40, y: 30, width: 160, height: 120, rotation: 15, fills: [paint], ...(parent ? { parent } : {}) });
}

describe('placeResult', () => {
  it('puts an image-fill result directly above the original with the same frame and fill settings', async () => {
    const shim = createFigmaShim();
    const frame = shim.frame({ name: 'Board', x: 500, y: 0, width: 800, height: 600 });
    const below = shim.rectangle({ name: 'Below', x: 0, y: 0, width: 10, height: 10, parent: frame });
    const original = await imageLayer(shim, frame);
    const above = shim.rectangle({ name: 'Above', x: 0, y: 0, width: 10, height: 10, parent: frame });
    const item: PlaceItem = { nodeId: original.id, read: 'image-fill', image: await whole(16, 12), mask: null, edit: { ...EDIT, originalId: original.id } };

    const { root, image, mask } = placeResult(shim.figma, original, item, 'none');

    expect(root).toBe(image);
    expect(mask).toBeNull();
    expect(frame.children.map((c) => c.name)).toEqual(['Below', 'Cat photo', 'cat → dog (seed 42)', 'Above']);
    expect(root.parent).toBe(frame);
    const placed = root as RectangleNode;
    expect([placed.width, placed.height]).toEqual([160, 120]);
    expectTransform(placed.relativeTransform, layerTransform(40, 30, 15));
    expect(placed.rotation).toBeCloseTo(15, 9);
    const [fill] = placed.fills as ImagePaint[];
    const [originalFill] = original.fills as ImagePaint[];
    expect(fill?.scaleMode).toBe('CROP');
    expect(fill?.imageTransform).toEqual(originalFill?.imageTransform);
    expect(fill?.imageHash).not.toBe(originalFill?.imageHash);
    const stored = await shim.figma.getImageByHash(fill?.imageHash ?? '')?.getBytesAsync();
    expect(stored).toBe(item.image.tiles[0]?.bytes);
    expect(readLayerEdit(placed)).toEqual(item.edit);
    expect(placed.getRelaunchData()).toEqual({ rerun: 'cat → dog, seed 42' });
    expect(below.parent).toBe(frame);
    expect(above.parent).toBe(frame);
  });

  it('places an exported layer as an image rectangle over the same frame', async () => {
    const shim = createFigmaShim();
    const card = shim.frame({ name: 'Card', x: 10, y: 20, width: 300, height: 200 });
    const item: PlaceItem = { nodeId: card.id, read: 'export', image: await whole(600, 400), mask: null, edit: { ...EDIT, kind: 'preview', engine: 'gan', originalId: card.id } };
    const { root } = placeResult(shim.figma, card, item, 'none');
    const page = shim.figma.currentPage;
    expect(page.children.indexOf(root)).toBe(page.children.indexOf(card) + 1);
    expect(root.type).toBe('RECTANGLE');
    expect(root.name).toBe('cat → dog (preview, seed 42)');
    expect([root.width, root.height]).toEqual([300, 200]);
    expectTransform(root.relativeTransform, layerTransform(10, 20));
    expect((root as RectangleNode).fills).toEqual([{ type: 'IMAGE', scaleMode: 'FILL', imageHash: expect.stringMatching(/^hash/) }]);
  });

  it('places an exported rotated layer upright over its bounding box', async () => {
    const shim = createFigmaShim();
    const card = shim.frame({ name: 'Tilted', x: 100, y: 100, width: 100, height: 100, rotation: 90 });
    // Rotated by +90°: the box spans x 100..200, y 0..100.
    const item: PlaceItem = { nodeId: card.id, read: 'export', image: await whole(100, 100), mask: null, edit: { ...EDIT, originalId: card.id } };
    const { root } = placeResult(shim.figma, card, item, 'none');
    expectTransform(root.relativeTransform, layerTransform(100, 0));
    expect(root.width).toBeCloseTo(100, 9);
    expect(root.height).toBeCloseTo(100, 9);
  });

  it('adds the mask as a hidden layer above the result', async () => {
    const shim = createFigmaShim();
    const original = await imageLayer(shim);
    const item: PlaceItem = { nodeId: original.id, read: 'image-fill', image: await whole(16, 12), mask: await whole(16, 12, [128, 128, 128]), edit: EDIT };
    const { root, mask } = placeResult(shim.figma, original, item, 'layer');
    const names = shim.figma.currentPage.children.map((c) => c.name);
    expect(names).toEqual(['Cat photo', 'cat → dog (seed 42)', 'Mask · cat → dog (seed 42)']);
    expect(mask?.visible).toBe(false);
    expect(root.visible).toBe(true);
    expectTransform((mask as RectangleNode).relativeTransform, layerTransform(40, 30, 15));
  });

  it('builds a group whose bottom layer masks the result by luminance', async () => {
    const shim = createFigmaShim();
    const original = await imageLayer(shim);
    const item: PlaceItem = { nodeId: original.id, read: 'image-fill', image: await whole(16, 12), mask: await whole(16, 12, [255, 255, 255]), edit: EDIT };
    const { root, image, mask } = placeResult(shim.figma, original, item, 'masked');
    expect(root.type).toBe('GROUP');
    expect(root.name).toBe('cat → dog (seed 42)');
    expect(shim.figma.currentPage.children.map((c) => c.name)).toEqual(['Cat photo', 'cat → dog (seed 42)']);
    const group = root as GroupNode;
    expect(group.children).toEqual([mask, image]);
    expect((mask as RectangleNode).isMask).toBe(true);
    expect((mask as RectangleNode).maskType).toBe('LUMINANCE');
    expect((image as RectangleNode).isMask).toBe(false);
    expect(readLayerEdit(group)).toEqual(EDIT);
  });

  it('places a result over 4096 px that arrives in tiles as a clipping frame arrives in tiles and becomes a clipping frame', async () => {
    const shim = createFigmaShim();
    const big = shim.frame({ name: 'Poster', x: 0, y: 0, width: 2600, height: 1000 });
    // The whole 5200×2000 PNG is refused by Figma (as by the shim)...
    const oversized = await png(5200, 2000);
    expect(() => shim.figma.createImage(oversized)).toThrow(/too large/);
    // ...so the panel sends it as two tiles.
    const image: TiledImage = {
      width: 5200,
      height: 2000,
      tiles: [
        { x: 0, y: 0, width: 4096, height: 2000, bytes: await png(4096, 2000) },
        { x: 4096, y: 0, width: 1104, height: 2000, bytes: await png(1104, 2000) },
      ],
    };
    const { root } = placeResult(shim.figma, big, { nodeId: big.id, read: 'export', image, mask: null, edit: EDIT }, 'none');
    expect(root.type).toBe('FRAME');
    const frame = root as FrameNode;
    expect(frame.clipsContent).toBe(true);
    expect([frame.width, frame.height]).toEqual([2600, 1000]);
    const tiles = frame.children as RectangleNode[];
    expect(tiles.map((t) => [t.name, t.x, t.y, t.width, t.height])).toEqual([
      ['Tile 1', 0, 0, 2048, 1000],
      ['Tile 2', 2048, 0, 552, 1000],
    ]);
  });

  it('refuses an untiled result over 4096 px, as Figma does', async () => {
    const shim = createFigmaShim();
    const big = shim.frame({ name: 'Poster', x: 0, y: 0, width: 2600, height: 1000 });
    const item: PlaceItem = { nodeId: big.id, read: 'export', image: await whole(5000, 10), mask: null, edit: EDIT };
    expect(() => placeResult(shim.figma, big, item, 'none')).toThrow(/too large/);
  });

  it('floats the result in an auto-layout parent instead of adding it to the flow', async () => {
    const shim = createFigmaShim();
    const stack = shim.frame({ name: 'Stack', x: 0, y: 0, width: 400, height: 400, layoutMode: 'VERTICAL' });
    const original = await imageLayer(shim, stack);
    const { root } = placeResult(shim.figma, original, { nodeId: original.id, read: 'image-fill', image: await whole(16, 12), mask: null, edit: EDIT }, 'none');
    expect((root as RectangleNode).layoutPositioning).toBe('ABSOLUTE');
    expectTransform(root.relativeTransform, layerTransform(40, 30, 15));
  });

  it('commits each result as its own undo step', async () => {
    const shim = createFigmaShim();
    const original = await imageLayer(shim);
    const item = async (seed: number): Promise<PlaceItem> => ({ nodeId: original.id, read: 'image-fill', image: await whole(16, 12), mask: await whole(16, 12), edit: { ...EDIT, seed } });
    placeResult(shim.figma, original, await item(1), 'masked');
    placeResult(shim.figma, original, await item(2), 'layer');
    const names = (): string[] => shim.figma.currentPage.children.map((c) => c.name);
    // Each result goes directly above the original, so the newest is lowest.
    expect(names()).toEqual(['Cat photo', 'cat → dog (seed 2)', 'Mask · cat → dog (seed 2)', 'cat → dog (seed 1)']);
    shim.undo();
    expect(names()).toEqual(['Cat photo', 'cat → dog (seed 1)']);
    shim.undo();
    expect(names()).toEqual(['Cat photo']);
  });

  it('floats a masked group in an auto-layout parent too, where the result was', async () => {
    const shim = createFigmaShim();
    const stack = shim.frame({ name: 'Stack', x: 0, y: 0, width: 400, height: 400, layoutMode: 'VERTICAL' });
    const original = await imageLayer(shim, stack);
    const item: PlaceItem = { nodeId: original.id, read: 'image-fill', image: await whole(16, 12), mask: await whole(16, 12, [255, 255, 255]), edit: EDIT };
    const { root, image } = placeResult(shim.figma, original, item, 'masked');
    expect(root.type).toBe('GROUP');
    expect(root.parent).toBe(stack);
    expect((root as GroupNode).layoutPositioning).toBe('ABSOLUTE');
    expectTransform(image.relativeTransform, layerTransform(40, 30, 15));
  });

  describe('in a component instance, which cannot take children (Figma\'s rule, modelled by the shim)', () => {
    /** Board (a frame) › Card (an instance) › [Group ›] Cat photo. */
    async function instanceTree(shim: FigmaShim, nested: boolean) {
      const board = shim.frame({ name: 'Board', x: 1000, y: 500, width: 800, height: 600 });
      shim.rectangle({ name: 'Backdrop', x: 0, y: 0, width: 800, height: 600, parent: board });
      const card = shim.frame({ name: 'Card', x: 100, y: 50, width: 400, height: 300, rotation: 30, parent: board });
      const original = await imageLayer(shim, card);
      if (nested) shim.groupOf([original], card, 'Group');
      shim.makeInstance(card);
      return { board, card, original };
    }

    it('the shim refuses, as Figma does, to put anything into an instance', async () => {
      const shim = createFigmaShim();
      const { card, original } = await instanceTree(shim, true);
      const loose = shim.figma.createRectangle();
      expect(() => card.appendChild(loose)).toThrow(FIGMA_ERRORS.parentInInstance);
      expect(() => (original.parent as GroupNode).insertChild(0, loose)).toThrow(FIGMA_ERRORS.parentInInstance);
      expect(() => shim.figma.currentPage.appendChild(original)).toThrow(FIGMA_ERRORS.nodeInInstance);
      expect(() => shim.figma.group([loose], card)).toThrow(FIGMA_ERRORS.parentInInstance);
    });

    for (const nested of [false, true]) {
      const where = nested ? 'inside a group inside an instance' : 'inside an instance';
      it(`places the result of an image ${where} beside the instance, at the same absolute transform`, async () => {
        const shim = createFigmaShim();
        const { board, card, original } = await instanceTree(shim, nested);
        const item: PlaceItem = { nodeId: original.id, read: 'image-fill', image: await whole(16, 12), mask: await whole(16, 12), edit: EDIT };
        const { root, mask } = placeResult(shim.figma, original, item, 'layer');
        expect(board.children.map((c) => c.name)).toEqual(['Backdrop', 'Card', 'cat → dog (seed 42)', 'Mask · cat → dog (seed 42)']);
        expect(root.parent).toBe(board);
        expect([root.width, root.height]).toEqual([160, 120]);
        expectTransform((root as RectangleNode).absoluteTransform, (original as RectangleNode).absoluteTransform);
        expectTransform((mask as RectangleNode).absoluteTransform, (original as RectangleNode).absoluteTransform);
        expect(card.children.map((c) => c.name)).toEqual([nested ? 'Group' : 'Cat photo']);
        expect(shim.figma.currentPage.children.map((c) => c.name)).toEqual(['Board']); // nothing stray
      });
    }

    it('places a masked group beside the instance too', async () => {
      const shim = createFigmaShim();
      const { board, original } = await instanceTree(shim, true);
      const item: PlaceItem = { nodeId: original.id, read: 'image-fill', image: await whole(16, 12), mask: await whole(16, 12, [255, 255, 255]), edit: EDIT };
      const { root, image } = placeResult(shim.figma, original, item, 'masked');
      expect(root.parent).toBe(board);
      expect(board.children.map((c) => c.name)).toEqual(['Backdrop', 'Card', 'cat → dog (seed 42)']);
      expectTransform((image as RectangleNode).absoluteTransform, (original as RectangleNode).absoluteTransform);
    });

    it('places a rendered layer inside an instance beside it, over the same bounds', async () => {
      const shim = createFigmaShim();
      const board = shim.frame({ name: 'Board', x: 10, y: 10, width: 800, height: 600 });
      const card = shim.frame({ name: 'Card', x: 100, y: 50, width: 400, height: 300, parent: board });
      const badge = shim.frame({ name: 'Badge', x: 20, y: 30, width: 80, height: 40, parent: card });
      shim.makeInstance(card);
      const { root } = placeResult(shim.figma, badge, { nodeId: badge.id, read: 'export', image: await whole(80, 40), mask: null, edit: EDIT }, 'none');
      expect(root.parent).toBe(board);
      expectTransform((root as RectangleNode).absoluteTransform, layerTransform(130, 90));
    });
  });

  it('leaves nothing behind when placing fails half way (a mask Figma cannot read)', async () => {
    const shim = createFigmaShim();
    const frame = shim.frame({ name: 'Board', x: 0, y: 0, width: 800, height: 600 });
    const original = await imageLayer(shim, frame);
    const broken: TiledImage = { width: 16, height: 12, tiles: [{ x: 0, y: 0, width: 16, height: 12, bytes: new Uint8Array([1, 2, 3, 4]) }] };
    for (const mode of ['layer', 'masked'] as const) {
      const item: PlaceItem = { nodeId: original.id, read: 'image-fill', image: await whole(16, 12), mask: broken, edit: EDIT };
      expect(() => placeResult(shim.figma, original, item, mode)).toThrow();
      expect(frame.children.map((c) => c.name)).toEqual(['Cat photo']);
      expect(shim.figma.currentPage.children.map((c) => c.name)).toEqual(['Board']);
    }
  });
});
