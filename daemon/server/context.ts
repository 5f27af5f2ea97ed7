// What the routes and the WebSocket need from the running daemon, in one object built by
// daemon/daemon.ts. Routes receive it instead of importing singletons, so tests can start several
// daemons side by side.
import type { HealthResponse, InstalledModel } from '../../shared/protocol/index.js';
import type { JobQueue } from '../jobs/queue.js';
import type { ResultStore } from '../jobs/results.js';
import type { Logger } from '../log.js';
import type { BodyLimits } from './body.js';
import type { Pairing } from './pairing.js';
import type { TeamExchange } from '../team/team-engine.js';
import type { TokenStore } from './tokens.js';
import type { UploadBudget } from './upload-budget.js';

export interface ServiceContext {
  readonly tokens: TokenStore;
  readonly pairing: Pairing;
  readonly queue: JobQueue;
  /** Uploaded images (POST /v1/images), read back by POST /v1/jobs. */
  readonly uploads: ResultStore;
  /** Job outputs (GET /v1/results/:id). */
  readonly results: ResultStore;
  readonly limits: BodyLimits;
  /** Upload bytes that may be arriving at once (R8, docs/SECURITY.md §Memory bound). */
  readonly uploadBudget: UploadBudget;
  readonly log: Logger;
  /** A team endpoint's exchange with its GPU workers (routes/team.ts); absent in local mode. */
  readonly team?: TeamExchange;
  health(): Promise<HealthResponse>;
  models(): Promise<InstalledModel[]>;
}
