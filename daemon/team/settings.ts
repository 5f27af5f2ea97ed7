// Team mode's settings, each documented with its default (docs/TEAM.md). The timings decide how fast
// a GPU worker that died is noticed: BullMQ keeps a lock on each running job that the worker renews
// every lockDurationMs/2; a lock that expires marks the job stalled at the next stalled check, and
// another worker runs it again.
export const TEAM_DEFAULTS = Object.freeze({
  /** The BullMQ queue's name (its keys live under `bull:<name>:` in the Redis database). */
  queueName: 'p2pz-edits',
  /** The Redis pub/sub channel on which the endpoint asks the workers to stop a running job. */
  cancelChannel: 'p2pz:cancel',
  /** BullMQ priorities (a lower number runs first): previews jump queued renders, as in local mode. */
  previewPriority: 1,
  /** A caption job (the panel's caption before the render) is as quick as a preview and as urgent. */
  captionPriority: 1,
  renderPriority: 10,
  /** Runs a job gets at most, counting the first (a worker crash or an engine fault retries it). */
  attempts: 3,
  /** Pause before a failed job runs again. */
  retryDelayMs: 1_000,
  /** How long a worker's lock on a running job lasts without renewal. */
  lockDurationMs: 30_000,
  /** How often workers look for stalled jobs (whose lock expired). */
  stalledIntervalMs: 30_000,
  /** Stalls a job survives before it fails; each stall is counted as an attempt in the client's note. */
  maxStalledCount: 2,
  /** After a cancel is published, how long the endpoint waits for the worker to confirm before it
   *  reports the job cancelled anyway (the worker's outputs are then never taken). */
  cancelGraceMs: 10_000,
  /** Jobs the endpoint has on the team queue at once; more wait in the endpoint's own queue (which
   *  also puts previews first). Each holds its input image in the endpoint's memory while it is out,
   *  so the endpoint's image memory is at most inFlight × the upload limit (docs/TEAM.md). Set it to
   *  at least the number of workers. */
  inFlight: 8,
  /** How often the endpoint counts the connected workers for health. */
  workerCountIntervalMs: 5_000,
});
export type TeamSettings = { -readonly [K in keyof typeof TEAM_DEFAULTS]: (typeof TEAM_DEFAULTS)[K] extends string ? string : number };
