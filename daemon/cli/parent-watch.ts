// `p2pz serve --with-parent`: stop when the process that launched the daemon is gone.
//
// `npm start` runs its script as `sh -c "<script>"`, and on SIGTERM npm forwards the signal to that
// shell only (@npmcli/run-script lib/signal-manager.js, npm 11.19). The shell then dies without
// signalling its child (seen with Debian's dash 0.5.12, which also does not exec a script's last
// command), so the daemon and its worker were left running, re-parented to init. A portable
// `exec` does not exist (cmd.exe runs the same script on Windows), so the daemon watches instead:
// once its parent has changed, it stops exactly as it does on SIGTERM.

export const PARENT_WATCH_DEFAULTS = Object.freeze({
  /** How often the parent process id is compared with the one seen at start. */
  intervalMs: 250,
});

/** Calls `onGone` once, when this process's parent is no longer the one it had at start. */
export function watchParent(onGone: () => void, intervalMs: number = PARENT_WATCH_DEFAULTS.intervalMs): () => void {
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    onGone();
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
