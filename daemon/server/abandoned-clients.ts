// Jobs of a closed page. A designer who closes the tab (or the plugin) mid-render does not want the
// GPU busy for minutes more. When the last event stream of a client (a token and its client id)
// closes, its queued and running jobs are cancelled after a short grace period; a stream of the same
// client that opens within it (a page reload that keeps its client id) keeps them. Clients that never
// opened an event stream (scripts polling over HTTP) are never affected.

export const ABANDONED_DEFAULTS = Object.freeze({
  /** How long a client may be without an event stream before its jobs are cancelled. */
  graceMs: 10_000,
});

export class AbandonedClients {
  private readonly open = new Map<string, number>();
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(
    /** Cancels the client's jobs; returns how many were cancelled. */
    private readonly cancel: (clientKey: string) => number,
    private readonly graceMs: number = ABANDONED_DEFAULTS.graceMs,
    private readonly onCancelled: (count: number) => void = () => undefined,
  ) {}

  /** An event stream of this client said hello. */
  connected(clientKey: string): void {
    this.open.set(clientKey, (this.open.get(clientKey) ?? 0) + 1);
    clearTimeout(this.timers.get(clientKey));
    this.timers.delete(clientKey);
  }

  /** An event stream of this client closed. */
  disconnected(clientKey: string): void {
    const left = (this.open.get(clientKey) ?? 1) - 1;
    if (left > 0) {
      this.open.set(clientKey, left);
      return;
    }
    this.open.delete(clientKey);
    clearTimeout(this.timers.get(clientKey));
    const timer = setTimeout(() => {
      this.timers.delete(clientKey);
      const count = this.cancel(clientKey);
      if (count > 0) this.onCancelled(count);
    }, this.graceMs);
    timer.unref();
    this.timers.set(clientKey, timer);
  }

  /** Stops every pending cancellation (the daemon is closing and cancels everything itself). */
  close(): void {
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }
}
