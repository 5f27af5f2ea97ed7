// Who may hold an event-stream socket that has not said hello yet (docs/SECURITY.md §Event-stream
// admission). Any page can open such sockets without a token, so they are budgeted per source (the
// Origin and the peer address together) and in total; an upgrade is never refused for the budget:
// the oldest waiting socket of its own source, or, when the total is spent, of the source holding
// the most, is closed to make room. A socket whose upgrade offered a valid token (the
// `p2pz.token.<token>` subprotocol) waits in a reserve instead: it counts against no budget and is
// never evicted, up to the token's own stream cap. What leaves: a hello, a close, the hello timeout.

export interface AdmissionSettings {
  /** Waiting sockets without a token, all sources together. */
  readonly maxPending: number;
  /** Waiting sockets without a token from one source (Origin + address). */
  readonly maxPendingPerSource: number;
  /** Waiting sockets in the reserve per token. */
  readonly maxReservedPerToken: number;
}

interface Waiting {
  readonly source: string;
  readonly tokenId: string | undefined;
  readonly evict: () => void;
}

export class PendingSockets {
  /** Oldest first. */
  private readonly waiting: Waiting[] = [];

  constructor(private readonly settings: AdmissionSettings) {}

  /**
   * Admits a socket that is about to be accepted. `tokenId` is the token its upgrade offered (already
   * verified), if any. Evicts whatever must make room (calling its `evict`) and returns the function
   * that removes this socket from the waiting line (call it on hello or close).
   */
  admit(source: string, tokenId: string | undefined, evict: () => void): () => void {
    const reserved = tokenId !== undefined && this.waiting.filter((w) => w.tokenId === tokenId).length < this.settings.maxReservedPerToken;
    const entry: Waiting = { source, tokenId: reserved ? tokenId : undefined, evict };
    if (!reserved) {
      const fromSource = this.unreserved().filter((w) => w.source === source);
      if (fromSource.length >= this.settings.maxPendingPerSource) this.evict(fromSource[0]);
      else if (this.unreserved().length >= this.settings.maxPending) this.evict(this.oldestOfLargestSource());
    }
    this.waiting.push(entry);
    return () => this.remove(entry);
  }

  /** Waiting sockets: without a token, and in the reserve. */
  counts(): { pending: number; reserved: number } {
    const pending = this.unreserved().length;
    return { pending, reserved: this.waiting.length - pending };
  }

  private unreserved(): Waiting[] {
    return this.waiting.filter((w) => w.tokenId === undefined);
  }

  private oldestOfLargestSource(): Waiting | undefined {
    const bySource = new Map<string, Waiting[]>();
    for (const w of this.unreserved()) {
      const list = bySource.get(w.source) ?? [];
      list.push(w);
      bySource.set(w.source, list);
    }
    let largest: Waiting[] = [];
    for (const list of bySource.values()) if (list.length > largest.length) largest = list;
    return largest[0];
  }

  private evict(entry: Waiting | undefined): void {
    if (entry === undefined) return;
    this.remove(entry);
    entry.evict();
  }

  private remove(entry: Waiting): void {
    const i = this.waiting.indexOf(entry);
    if (i >= 0) this.waiting.splice(i, 1);
  }
}
