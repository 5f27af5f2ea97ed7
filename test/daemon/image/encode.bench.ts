// PNG settings on the hot path: time per encode at zlib levels 1..6 with libpng's adaptive row
// filters, and level 2 without filters, for a 512×512 photo-like RGB image (a working-size result) and
// the same image upsampled to 2048×2048 (a result returned at the input's size). Sizes are printed.
// Run: npx vitest bench --run test/daemon/image/encode.bench.ts
import sharp from 'sharp';
import { bench, describe } from 'vitest';
import { encodePng, type PngOptions } from '../../../daemon/image/encode.js';
import { photoLike } from './fixtures.js';

const small = { width: 512, height: 512, rgb: photoLike(512, 512) };
const large = {
  width: 2048,
  height: 2048,
  rgb: new Uint8Array(await sharp(small.rgb, { raw: { width: 512, height: 512, channels: 3 } }).resize(2048, 2048).raw().toBuffer()),
};
const settings: PngOptions[] = [
  ...[1, 2, 3, 4, 5, 6].map((compressionLevel) => ({ compressionLevel, adaptiveFiltering: true })),
  { compressionLevel: 2, adaptiveFiltering: false },
];

for (const image of [small, large]) {
  describe(`encodePng ${image.width}×${image.height} RGB`, async () => {
    for (const options of settings) {
      const name = `level ${options.compressionLevel}${options.adaptiveFiltering ? '' : ' no filter'}`;
      const size = (await encodePng(image, options)).length;
      console.log(`${image.width}² ${name}: ${(size / 1024).toFixed(0)} KiB, ${((size * 8) / (image.width * image.height)).toFixed(2)} bits/pixel`);
      bench(name, async () => {
        await encodePng(image, options);
      }, { time: 1000, iterations: 3 });
    }
  });
}
