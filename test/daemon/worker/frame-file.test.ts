// The frame file between the worker and the daemon (daemon/worker/frame-file.ts): a frame written at
// offset 0 reads back byte for byte; one frame at a time (the writer refuses another until the reader
// has said so), small frames stay inline, a short file reads as nothing, and the file has no name on
// disk once created (POSIX), so nothing else opens it and no crash leaves it behind.
import { readdirSync, writeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FRAME_FILE_DEFAULTS, FrameFileReader, FrameFileWriter, frameFileFlag } from '../../../daemon/worker/frame-file.js';

const readers: FrameFileReader[] = [];
afterEach(() => {
  for (const r of readers.splice(0)) r.close();
});

function pixels(bytes: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: bytes }, (_, i) => (i * 31 + seed) & 255);
}

function reader(parent?: string): FrameFileReader {
  const r = new FrameFileReader(parent);
  readers.push(r);
  return r;
}

describe('frame file', () => {
  it('hands a frame over byte for byte, one at a time', () => {
    const r = reader();
    const writer = new FrameFileWriter(r.fd);
    const first = pixels(512 * 512 * 4, 1);
    expect(writer.write(first)).toBe(true);
    // Not read yet: the next frame must go inline.
    expect(writer.write(pixels(512 * 512 * 4, 2))).toBe(false);
    expect(r.read(first.byteLength)).toEqual(first);
    writer.read();
    const second = pixels(256 * 128 * 4, 3);
    expect(writer.write(second)).toBe(true);
    expect(r.read(second.byteLength)).toEqual(second);
  });

  it('leaves small frames inline, reads a short file as nothing', () => {
    const r = reader();
    const writer = new FrameFileWriter(r.fd);
    expect(writer.write(pixels(FRAME_FILE_DEFAULTS.minBytes - 4, 1))).toBe(false);
    writeSync(r.fd, pixels(100, 1), 0, 100, 0);
    expect(r.read(200)).toBeUndefined();
    r.close();
    expect(r.read(4)).toBeUndefined();
  });

  it('has no name on disk once created (Windows: until closed)', async () => {
    const parent = await mkdtemp(join(tmpdir(), 'p2pz-frame-parent-'));
    try {
      const r = reader(parent);
      const windows = process.platform === 'win32';
      expect(r.named).toBe(windows);
      expect(readdirSync(parent)).toHaveLength(windows ? 1 : 0);
      const writer = new FrameFileWriter(r.fd);
      expect(writer.write(pixels(FRAME_FILE_DEFAULTS.minBytes, 5))).toBe(true);
      expect(r.read(FRAME_FILE_DEFAULTS.minBytes)).toEqual(pixels(FRAME_FILE_DEFAULTS.minBytes, 5));
      r.close();
      expect(readdirSync(parent)).toEqual([]);
    } finally {
      await rm(parent, { recursive: true, force: true });
    }
  });

  it('reads the inherited descriptor from the worker arguments', () => {
    expect(frameFileFlag(['node', 'worker.js', '--device', 'cpu', '--frame-fd', '4'])).toBe(4);
    expect(frameFileFlag(['node', 'worker.js'])).toBeUndefined();
    expect(frameFileFlag(['node', 'worker.js', '--frame-fd', '1'])).toBeUndefined();
    expect(frameFileFlag(['node', 'worker.js', '--frame-fd', 'x'])).toBeUndefined();
  });
});
