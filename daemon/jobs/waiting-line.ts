// The order in which queued jobs reach the one GPU: every waiting `caption` (a fraction of a second,
// and the panel shows it before anything else) runs first, then every waiting `preview` before every
// waiting `render` (a designer waits for a preview; a render is a background task), first come first
// served within a kind. Nothing preempts the running job.
import type { JobKind } from '../../shared/protocol/index.js';

/** Lanes in the order they are served. */
const LANE_ORDER: readonly JobKind[] = ['caption', 'preview', 'render'];

export class WaitingLine<T extends { readonly kind: JobKind }> {
  private readonly lanes: Record<JobKind, T[]> = { caption: [], preview: [], render: [] };

  get size(): number {
    return LANE_ORDER.reduce((n, kind) => n + this.lanes[kind].length, 0);
  }

  push(item: T): void {
    this.lanes[item.kind].push(item);
  }

  /** Takes the item that runs next. */
  shift(): T | undefined {
    for (const kind of LANE_ORDER) {
      const item = this.lanes[kind].shift();
      if (item !== undefined) return item;
    }
    return undefined;
  }

  /** Removes `item`; false when it was not waiting. */
  remove(item: T): boolean {
    const lane = this.lanes[item.kind];
    const index = lane.indexOf(item);
    if (index < 0) return false;
    lane.splice(index, 1);
    return true;
  }

  /** Items in the order they will run. */
  *[Symbol.iterator](): IterableIterator<T> {
    for (const kind of LANE_ORDER) yield* this.lanes[kind];
  }
}
