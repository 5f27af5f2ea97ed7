// Which uploads a worker holds, as the supervisor decides it. Each upload announced to the worker as a
// hint (`prefetch`, pipeline/gan-prefetch.ts) names its upload id, and the worker keeps those bytes. A
// job that reads the same upload is then sent with the id alone instead of the bytes. At 512² that
// saves the IPC copy of the encoded image (≈ 0.5 MB) and the worker's hash of it, on the quick preview's
// path (docs/BENCHMARKS.md "Previews: uploads held by the worker").
//
// The supervisor alone decides what is kept: every `prefetch` message says which ids the worker drops
// (least recently used first, within a count and a byte bound). IPC delivers messages in order, so
// when a `run` names an id, the worker has already received the `prefetch` that gave it and no `drop`
// has taken it away since. Nothing is asked back. A new worker process starts with a new, empty ledger.

export const HELD_UPLOADS_DEFAULTS = Object.freeze({
  /** Uploads a worker keeps at once: the layer a designer works on, and a few they came from. */
  maxUploads: 4,
  /** Encoded bytes a worker keeps at once. */
  maxBytes: 32 * 1024 * 1024,
});

export class HeldUploads {
  readonly #maxUploads: number;
  readonly #maxBytes: number;
  /** Id → bytes, least recently used first. */
  readonly #held = new Map<string, number>();
  #bytes = 0;

  constructor(options: { readonly maxUploads?: number; readonly maxBytes?: number } = {}) {
    this.#maxUploads = options.maxUploads ?? HELD_UPLOADS_DEFAULTS.maxUploads;
    this.#maxBytes = options.maxBytes ?? HELD_UPLOADS_DEFAULTS.maxBytes;
  }

  get size(): number {
    return this.#held.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Whether the worker holds `id`, leaving the order alone. */
  has(id: string): boolean {
    return this.#held.has(id);
  }

  /** Whether the worker holds `id`; if so, it becomes the most recently used. */
  use(id: string): boolean {
    const bytes = this.#held.get(id);
    if (bytes === undefined) return false;
    this.#held.delete(id);
    this.#held.set(id, bytes);
    return true;
  }

  /**
   * Records that the worker will hold `id` (`bytes` long) once it reads the `prefetch` message that
   * carries it, and returns the ids that message must drop. An upload larger than the byte bound is
   * not held: undefined (it is announced without an id, or not at all).
   */
  add(id: string, bytes: number): string[] | undefined {
    if (bytes > this.#maxBytes) return undefined;
    const dropped: string[] = [];
    const previous = this.#held.get(id);
    if (previous !== undefined) {
      this.#held.delete(id);
      this.#bytes -= previous;
    }
    for (const [old, size] of this.#held) {
      if (this.#held.size < this.#maxUploads && this.#bytes + bytes <= this.#maxBytes) break;
      this.#held.delete(old);
      this.#bytes -= size;
      dropped.push(old);
    }
    this.#held.set(id, bytes);
    this.#bytes += bytes;
    return dropped;
  }
}
