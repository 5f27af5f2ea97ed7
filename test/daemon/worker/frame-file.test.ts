// The frame file between the worker and the daemon (daemon/worker/frame-file.ts): a frame written at
// offset 0 reads back byte for byte; one frame at a time (the writer refuses another until the reader
// has said so), small frames stay inline, a short file reads as nothing, and closing removes the
// private folder with the file. The daemon-side file is mode 0600 in a 0700 folder.
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FRAME_FILE_DEFAULTS, FrameFileReader, FrameFileWriter, frameFileFlag } from '../../../daemon/worker/frame-file.js';

const readers: FrameFileReader[] = [];
afterEach(() => {
  for (const r of readers.splice(0)) r.close();
});

function pixels(bytes: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: bytes }, (_, i) => (i * 31 + seed) & 255);
}

describe('frame file', () => {
  it('hands a frame over byte for byte, one at a time', () => {
    const reader = new FrameFileReader();
    readers.push(reader);
    const writer = new FrameFileWriter(reader.path);
    const first = pixels(512 * 512 * 4, 1);
    expect(writer.write(first)).toBe(true);
    // Not read yet: the next frame must go inline.
    expect(writer.write(pixels(512 * 512 * 4, 2))).toBe(false);
    expect(reader.read(first.byteLength)).toEqual(first);
    writer.read();
    const second = pixels(256 * 128 * 4, 3);
    expect(writer.write(second)).toBe(true);
    expect(reader.read(second.byteLength)).toEqual(second);
  });

  it('leaves small frames inline, reads a short file as nothing', () => {
    const reader = new FrameFileReader();
    readers.push(reader);
    const writer = new FrameFileWriter(reader.path);
    expect(writer.write(pixels(FRAME_FILE_DEFAULTS.minBytes - 4, 1))).toBe(false);
    writeFileSync(reader.path, pixels(100, 1));
    expect(reader.read(200)).toBeUndefined();
  });

  it('is private to its user and removed with its folder on close', () => {
    const reader = new FrameFileReader();
    if (process.platform !== 'win32') {
      expect(statSync(reader.path).mode & 0o777).toBe(0o600);
      expect(statSync(dirname(reader.path)).mode & 0o777).toBe(0o700);
    }
    reader.close();
    expect(existsSync(dirname(reader.path))).toBe(false);
    expect(reader.read(4)).toBeUndefined();
    // The worker opens the daemon's file and never creates one.
    expect(() => new FrameFileWriter(reader.path)).toThrow();
  });

  it('reads its path from the worker arguments', () => {
    expect(frameFileFlag(['node', 'worker.js', '--device', 'cpu', '--frame-file', '/x/frame.rgba'])).toBe('/x/frame.rgba');
    expect(frameFileFlag(['node', 'worker.js'])).toBeUndefined();
  });
});
