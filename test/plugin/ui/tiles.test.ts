// Cutting results past Figma's 4096 px image limit into tiles, with Chromium's real canvas: the tiles
// cover the image exactly and carry the right pixels on both sides of the cut.
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tileGrid } from '../../../plugin/ui/tiles.js';
import { launchChromium, type Chromium } from '../../browser/chromium.js';

describe('tileGrid', () => {
  it('covers the image row by row with tiles of at most 4096²', () => {
    expect(tileGrid(100, 50)).toEqual([{ x: 0, y: 0, width: 100, height: 50 }]);
    expect(tileGrid(8193, 4097)).toEqual([
      { x: 0, y: 0, width: 4096, height: 4096 },
      { x: 4096, y: 0, width: 4096, height: 4096 },
      { x: 8192, y: 0, width: 1, height: 4096 },
      { x: 0, y: 4096, width: 4096, height: 1 },
      { x: 4096, y: 4096, width: 4096, height: 1 },
      { x: 8192, y: 4096, width: 1, height: 1 },
    ]);
  });
});

describe('toTiledImage in Chromium', () => {
  let chromium: Chromium;
  beforeAll(async () => {
    chromium = await launchChromium();
  });
  afterAll(async () => {
    await chromium?.close();
  });

  it('passes small images through and cuts a 4200 px wide one at x = 4096', async () => {
    const bundle = await build({
      stdin: {
        contents: `import { toTiledImage } from './tiles.ts'; (window as unknown as Record<string, unknown>).toTiledImage = toTiledImage;`,
        resolveDir: fileURLToPath(new URL('../../../plugin/ui/', import.meta.url)),
        loader: 'ts',
      },
      bundle: true,
      write: false,
      format: 'iife',
      logLevel: 'error',
    });
    const page = await chromium.context.newPage();
    await page.addScriptTag({ content: bundle.outputFiles[0]?.text ?? '' });
    // Red up to x = 4095, blue from x = 4096.
    const width = 4200;
    const height = 20;
    const raw = Buffer.alloc(width * height * 3);
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) raw.set(x < 4096 ? [255, 0, 0] : [0, 0, 255], (y * width + x) * 3);
    const png = await sharp(raw, { raw: { width, height, channels: 3 } }).png().toBuffer();
    const small = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#00ff00' } }).png().toBuffer();

    const run = (b64: string, w: number, h: number) =>
      page.evaluate(
        async ([data, ww, hh]) => {
          const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
          const fn = (window as unknown as { toTiledImage: (b: Uint8Array, w: number, h: number) => Promise<{ width: number; height: number; tiles: { x: number; y: number; width: number; height: number; bytes: Uint8Array }[] }> }).toTiledImage;
          const tiled = await fn(bytes, ww, hh);
          return { ...tiled, same: tiled.tiles[0]?.bytes === bytes, tiles: tiled.tiles.map((t) => ({ ...t, bytes: btoa(String.fromCharCode(...t.bytes)) })) };
        },
        [b64, w, h] as const,
      );

    const passed = await run(small.toString('base64'), 8, 8);
    expect(passed.tiles).toHaveLength(1);
    expect(passed.same).toBe(true);

    const tiled = await run(png.toString('base64'), width, height);
    expect(tiled.tiles.map(({ x, y, width: w, height: h }) => [x, y, w, h])).toEqual([
      [0, 0, 4096, 20],
      [4096, 0, 104, 20],
    ]);
    const pixel = async (b64: string, x: number, y: number): Promise<number[]> => {
      const { data, info } = await sharp(Buffer.from(b64, 'base64')).raw().toBuffer({ resolveWithObject: true });
      const i = (y * info.width + x) * info.channels;
      return [data[i] ?? -1, data[i + 1] ?? -1, data[i + 2] ?? -1];
    };
    const [left, right] = tiled.tiles;
    expect(await pixel(left?.bytes ?? '', 4095, 10)).toEqual([255, 0, 0]);
    expect(await pixel(right?.bytes ?? '', 0, 10)).toEqual([0, 0, 255]);
    expect(await pixel(right?.bytes ?? '', 103, 19)).toEqual([0, 0, 255]);
    await page.close();
  });
});
