// The quick preview's frame pixels, handed from the worker to the daemon through a file instead of the
// IPC channel. A 512² frame is a megabyte of RGBA; on the IPC channel it was serialized into a fresh
// buffer and read back in 64 KiB pieces, both processes waking in turn: 5–15 ms on the 2-core machine,
// against well under 1 ms to write the same bytes into a file at offset 0 and read them back
// (docs/BENCHMARKS.md "daemon"). The daemon creates the file (mode 0600) in a folder of its own
// (mkdtemp: 0700) and names it to the worker with `--frame-file`; the worker overwrites it in place
// (its pages stay allocated) and says so in its `progress` message (`frameFile`, no pixels); the daemon
// reads it at once and answers `frame-read`, and until then the worker sends any further frame inline.
// So the file holds at most one frame, is never read while written, and is removed with the folder
// when the supervisor closes.
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const FRAME_FILE_DEFAULTS = Object.freeze({
  /** The worker's flag naming the file. */
  flag: '--frame-file',
  /** Frames smaller than this go inline on the IPC channel (step previews are thumbnails). */
  minBytes: 64 * 1024,
});

/** The daemon's side: creates the file, reads a frame out of it, removes it. */
export class FrameFileReader {
  readonly path: string;
  readonly #dir: string;
  #fd: number | undefined;

  constructor(parent: string = tmpdir()) {
    this.#dir = mkdtempSync(join(parent, 'p2pz-frames-'));
    this.path = join(this.#dir, 'frame.rgba');
    this.#fd = openSync(this.path, 'w+', 0o600);
  }

  /** The first `byteLength` bytes of the file, in a buffer of their own; undefined when the file
   *  holds fewer (or is closed). */
  read(byteLength: number): Uint8Array | undefined {
    if (this.#fd === undefined) return undefined;
    // Every byte is read into it before it is handed on (else undefined): no zero fill needed.
    const unset = Buffer.allocUnsafe(byteLength);
    const out = new Uint8Array(unset.buffer, unset.byteOffset, byteLength);
    let at = 0;
    while (at < byteLength) {
      const n = readSync(this.#fd, out, at, byteLength - at, at);
      if (n === 0) return undefined;
      at += n;
    }
    return out;
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

/** The worker's side: writes a frame at offset 0 of the file the daemon named, one frame at a time. */
export class FrameFileWriter {
  readonly #fd: number;
  /** A frame was written and the daemon has not said `frame-read` yet. */
  #unread = false;

  constructor(path: string) {
    // 'r+': the daemon made the file; the worker never creates one.
    this.#fd = openSync(path, 'r+');
  }

  /** Writes `rgba` when the file is free and the frame is large enough to be worth it; false when the
   *  frame should go inline instead. */
  write(rgba: Uint8Array): boolean {
    if (this.#unread || rgba.byteLength < FRAME_FILE_DEFAULTS.minBytes) return false;
    let at = 0;
    while (at < rgba.byteLength) at += writeSync(this.#fd, rgba, at, rgba.byteLength - at, at);
    this.#unread = true;
    return true;
  }

  /** The daemon has read the last frame: the file is free again. */
  read(): void {
    this.#unread = false;
  }
}

/** The frame file's path from the worker's arguments, if the daemon gave one. */
export function frameFileFlag(argv: readonly string[]): string | undefined {
  const i = argv.indexOf(FRAME_FILE_DEFAULTS.flag);
  return i >= 0 ? argv[i + 1] : undefined;
}
