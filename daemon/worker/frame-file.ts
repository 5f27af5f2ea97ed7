// The quick preview's frame pixels, handed from the worker to the daemon through a file instead of the
// IPC channel. A 512² frame is a megabyte of RGBA; on the IPC channel it was serialized into a fresh
// buffer and read back in 64 KiB pieces, both processes waking in turn: 5–15 ms on the 2-core machine,
// against well under 1 ms to write the same bytes into a file at offset 0 and read them back
// (docs/BENCHMARKS.md "daemon"). The daemon creates the file (mode 0600, in a mkdtemp folder: 0700),
// opens it and at once removes its name (where the platform allows: not Windows, where the folder goes
// on close), so nothing else can open it and no crash leaves it behind; the open file goes to each
// worker as an inherited descriptor (`stdio[FRAME_FILE_DEFAULTS.fd]`, named by `--frame-fd`). The
// worker overwrites it at offset 0 (its pages stay allocated) and says so in its `progress` message
// (`frameFile`, no pixels); the daemon reads it at once and answers `frame-read`, and until then the
// worker sends any further frame inline. So the file holds at most one frame and is never read while
// it is written.
import { closeSync, mkdtempSync, openSync, readSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const FRAME_FILE_DEFAULTS = Object.freeze({
  /** The worker's flag naming the inherited descriptor. */
  flag: '--frame-fd',
  /** The descriptor the worker inherits it as (stdio index: 0–2 are std streams, 3 the IPC channel). */
  fd: 4,
  /** Frames smaller than this go inline on the IPC channel (step previews are thumbnails). */
  minBytes: 64 * 1024,
});

/** The daemon's side: creates the file, reads a frame out of it, closes it. */
export class FrameFileReader {
  /** The open file, for the worker's stdio. */
  readonly fd: number;
  /** Its folder while the file still has a name there (Windows: until close). */
  #dir: string | undefined;
  #open = true;

  constructor(parent: string = tmpdir()) {
    const dir = mkdtempSync(join(parent, 'p2pz-frames-'));
    const path = join(dir, 'frame.rgba');
    this.fd = openSync(path, 'w+', 0o600);
    this.#dir = dir;
    try {
      unlinkSync(path);
      rmSync(dir, { recursive: true, force: true });
      this.#dir = undefined;
    } catch {
      // An open file cannot lose its name here: the folder is removed on close.
    }
  }

  /** Whether the file still has a name on disk (tests: not after construction, except on Windows). */
  get named(): boolean {
    return this.#dir !== undefined;
  }

  /** The first `byteLength` bytes of the file, in a buffer of their own; undefined when the file
   *  holds fewer (or is closed). */
  read(byteLength: number): Uint8Array | undefined {
    if (!this.#open) return undefined;
    // Every byte is read into it before it is handed on (else undefined): no zero fill needed.
    const unset = Buffer.allocUnsafe(byteLength);
    const out = new Uint8Array(unset.buffer, unset.byteOffset, byteLength);
    let at = 0;
    while (at < byteLength) {
      const n = readSync(this.fd, out, at, byteLength - at, at);
      if (n === 0) return undefined;
      at += n;
    }
    return out;
  }

  close(): void {
    if (this.#open) closeSync(this.fd);
    this.#open = false;
    if (this.#dir !== undefined) rmSync(this.#dir, { recursive: true, force: true });
    this.#dir = undefined;
  }
}

/** The worker's side: writes a frame at offset 0 of the file it inherited, one frame at a time. */
export class FrameFileWriter {
  readonly #fd: number;
  /** A frame was written and the daemon has not said `frame-read` yet. */
  #unread = false;

  constructor(fd: number) {
    this.#fd = fd;
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

/** The inherited descriptor from the worker's arguments, if the daemon gave one. */
export function frameFileFlag(argv: readonly string[]): number | undefined {
  const i = argv.indexOf(FRAME_FILE_DEFAULTS.flag);
  const fd = i >= 0 ? Number(argv[i + 1]) : Number.NaN;
  return Number.isInteger(fd) && fd > 2 ? fd : undefined;
}
