// The WebSocket: one stream of job events per client. The token never goes in the URL: the first
// message is `hello` with the token; until it is accepted every other message is refused. These are
// the text frames (JSON); preview pixels travel as binary frames (preview-frame.ts).
import { z } from 'zod';
import { Version } from './version.js';
import { ErrorBody } from './errors.js';
import { Id, JobKind, JobOutcome, Stage } from './jobs.js';
import { ClientId, HealthResponse } from './http.js';

// ---- client → daemon ----
export const HelloMessage = z.object({ v: Version, type: z.literal('hello'), token: z.string().max(200), clientId: ClientId });
export const CancelMessage = z.object({ v: Version, type: z.literal('cancel'), jobId: Id });
export const PingMessage = z.object({ v: Version, type: z.literal('ping'), nonce: z.number().int().optional() });
export const ClientMessage = z.discriminatedUnion('type', [HelloMessage, CancelMessage, PingMessage]);
export type ClientMessage = z.infer<typeof ClientMessage>;

// ---- daemon → client ----
const jobEvent = { v: Version, jobId: Id, kind: JobKind };
export const WelcomeEvent = z.object({ v: Version, type: z.literal('welcome'), health: HealthResponse });
export const QueuedEvent = z.object({ ...jobEvent, type: z.literal('queued'), position: z.number().int().positive() });
export const StartedEvent = z.object({ ...jobEvent, type: z.literal('started') });
export const ProgressEvent = z.object({
  ...jobEvent,
  type: z.literal('progress'),
  stage: Stage,
  step: z.number().int().nonnegative(),
  total: z.number().int().positive(),
});
/** A team endpoint's note that a job is being run again after its GPU worker stopped or failed
 *  (daemon/team): the job keeps its id and ends with exactly one terminal event as always. */
export const RetryingEvent = z.object({
  ...jobEvent,
  type: z.literal('retrying'),
  /** The attempt now starting, 2 or more. */
  attempt: z.number().int().min(2),
  /** The attempts a job gets at most. */
  attempts: z.number().int().min(2),
});
export const FinishedEvent = z.object({ ...jobEvent, type: z.literal('finished'), outcome: JobOutcome });
export const CancelledEvent = z.object({ ...jobEvent, type: z.literal('cancelled') });
export const JobErrorEvent = z.object({ ...jobEvent, type: z.literal('error'), error: ErrorBody });
/** An error about a message, not a job (bad JSON, unknown type, wrong version); the connection stays. */
export const ProtocolErrorEvent = z.object({ v: Version, type: z.literal('protocol-error'), error: ErrorBody });
export const PongEvent = z.object({ v: Version, type: z.literal('pong'), nonce: z.number().int().optional() });

export const ServerEvent = z.discriminatedUnion('type', [
  WelcomeEvent,
  QueuedEvent,
  StartedEvent,
  ProgressEvent,
  RetryingEvent,
  FinishedEvent,
  CancelledEvent,
  JobErrorEvent,
  ProtocolErrorEvent,
  PongEvent,
]);
export type ServerEvent = z.infer<typeof ServerEvent>;
export type JobEvent = Extract<ServerEvent, { jobId: string }>;
