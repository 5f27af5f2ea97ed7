// One `p2pz edit` of the same image with an optimized model and its plain export, through the CLI's
// main() in this process: the optimized-export tests compare the two results pixel by pixel.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'vitest';
import { pixels, rgbaPng } from '../../pipeline/tiny-pipeline.js';
import { captureIo, type Main } from '../../../fixtures/cli-main.js';

type Pixels = Awaited<ReturnType<typeof pixels>>;

/** Edits a 40×48 image cat → dog (64 px, 2 steps, seed 3) with `fused` and with `plain` (model
 *  folders), writing into `dir` with P2PZ_HOME `home`; each run must exit 0. */
export async function editWithBoth(main: Main, dir: string, home: string, fused: string, plain: string): Promise<{ input: { raw: Buffer }; fused: Pixels; plain: Pixels }> {
  const input = await rgbaPng(40, 48);
  const inputPath = join(dir, 'in.png');
  await writeFile(inputPath, input.png);
  const run = async (model: string, out: string): Promise<Pixels> => {
    const io = captureIo({ P2PZ_HOME: home });
    const argv = ['edit', inputPath, '--model', model, '--from', 'cat', '--to', 'dog', '--steps', '2',
      '--reg-steps', '1', '--size', '64', '--seed', '3', '--bank-count', '4', '--device', 'cpu', '--out', out];
    expect(await main(argv, io), io.text.err).toBe(0);
    return pixels(await readFile(out));
  };
  return { input, fused: await run(fused, join(dir, 'fused.png')), plain: await run(plain, join(dir, 'plain.png')) };
}
