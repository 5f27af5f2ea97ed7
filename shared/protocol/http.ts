// HTTP bodies and responses, all under /v1. Every JSON body carries `v`.
import { z } from 'zod';
import { Version } from './version.js';
import { CaptionJobRequest, EditJobRequest, Id, JobState } from './jobs.js';
import { ErrorBody } from './errors.js';
import { Device } from './device.js';
import { DurationSample } from './durations.js';
import { normalizePairingCode, PAIRING_CODE, PAIRING_CODE_SHOWN } from './pairing-code.js';

export const WorkerHealth = z.object({
  state: z.enum(['starting', 'ready', 'busy', 'restarting', 'crash-loop', 'stopped']),
  restarts: z.number().int().nonnegative(),
  /** Crashes within the crash-loop window. */
  recentCrashes: z.number().int().nonnegative(),
  lastCrash: z.string().max(300).optional(),
});

export const InstalledModel = z.object({
  name: z.string(),
  /** `captioner`: an image captioner (BLIP) that writes the caption when a job gives none; when none
   *  is installed, edits use the template caption "a photo of a {source}". */
  kind: z.enum(['diffusion', 'gan', 'captioner']),
  /** For GAN generators: the direction they were distilled for. */
  direction: z.object({ source: z.string(), target: z.string() }).optional(),
  demo: z.boolean().default(false),
});
export type InstalledModel = z.infer<typeof InstalledModel>;

/** GET /v1/health (no token needed). */
export const HealthResponse = z.object({
  v: Version,
  name: z.literal('p2pz'),
  version: z.string(),
  state: z.enum(['starting', 'ready', 'degraded', 'stopping']),
  device: Device.nullable(),
  worker: WorkerHealth,
  models: z.array(InstalledModel),
  queue: z.object({ running: z.number().int(), queued: z.number().int() }),
  /** A team endpoint (docs/TEAM.md): the GPU workers connected to its queue. */
  team: z.object({ workers: z.number().int().nonnegative() }).optional(),
  /** The last full renders on this device, for the panel's duration estimate (durations.ts). */
  durations: z.array(DurationSample).max(20).optional(),
});
export type HealthResponse = z.infer<typeof HealthResponse>;

/** POST /v1/pair (no token needed): exchange the code the daemon prints for a bearer token. */
export const PairRequest = z.object({
  v: Version,
  /** As typed: case, hyphens and spaces do not matter (pairing-code.ts); parsed to the canonical code. */
  code: z
    .string()
    .max(PAIRING_CODE.maxInput)
    .refine((text) => normalizePairingCode(text) !== null, 'a code of 8 letters and digits, like 7K3Q-MXR9')
    .transform((text) => normalizePairingCode(text) ?? ''),
  /** A label for the paired client, shown by `p2pz tokens`. */
  client: z.string().max(60).default('plugin'),
});
export const PairResponse = z.object({ v: Version, token: z.string() });

/** POST /v1/pairing-code (CLI token only): a fresh pairing code, replacing the previous one. */
export const PairingCodeRequest = z.object({ v: Version });
export const PairingCodeResponse = z.object({
  v: Version,
  /** The shown form, `7K3Q-MXR9`. */
  code: z.string().regex(PAIRING_CODE_SHOWN),
  /** Epoch milliseconds. */
  expiresAt: z.number().int().positive(),
});
export type PairingCodeResponse = z.infer<typeof PairingCodeResponse>;

/** POST /v1/images, body = the raw image with its exact Content-Type. */
export const ImageUploadResponse = z.object({
  v: Version,
  imageId: Id,
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  format: z.enum(['png', 'jpeg', 'webp']),
});
export type ImageUploadResponse = z.infer<typeof ImageUploadResponse>;

/** POST /v1/jobs. */
export const JobSubmit = z.discriminatedUnion('kind', [EditJobRequest.extend({ v: Version }), CaptionJobRequest.extend({ v: Version })]);
export type JobSubmit = z.infer<typeof JobSubmit>;
export type JobSubmitInput = z.input<typeof JobSubmit>;
export const JobResponse = z.object({ v: Version, job: JobState });
export type JobResponse = z.infer<typeof JobResponse>;

/** GET /v1/models. */
export const ModelsResponse = z.object({ v: Version, models: z.array(InstalledModel) });

/** Every error response. */
export const ErrorResponse = ErrorBody.extend({ v: Version });
export type ErrorResponse = z.infer<typeof ErrorResponse>;

/** Header that ties HTTP requests to a WebSocket event stream (one stream per client). */
export const CLIENT_HEADER = 'x-p2pz-client';
export const ClientId = Id;

// ---- Tokens (CLI token only): what `p2pz tokens list|create|revoke` asks the running daemon ----

/** A client token's name: the pairing's label, or the NAME given to `p2pz tokens create`. */
export const TokenName = z
  .string()
  .trim()
  .min(1)
  .max(60)
  .regex(/^[\p{L}\p{N}][\p{L}\p{N} ._@+-]*$/u, 'letters, digits, spaces and . _ @ + -');
export const TokenInfo = z.object({
  id: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/),
  name: z.string().max(60),
  /** Epoch milliseconds. */
  createdAt: z.number().int().nonnegative(),
  /** Epoch milliseconds of the last request or open event stream; null: never used. */
  lastUsedAt: z.number().int().nonnegative().nullable(),
  /** `worker`: a team's GPU worker (docs/TEAM.md), which may use only the `/v1/team/` routes. */
  kind: z.enum(['client', 'worker']).default('client'),
});
export type TokenInfo = z.infer<typeof TokenInfo>;
/** GET /v1/tokens. */
export const TokensResponse = z.object({
  v: Version,
  tokens: z.array(TokenInfo),
  /** Tokens unused for this many days are refused and forgotten; null: they never expire. */
  expireUnusedDays: z.number().int().positive().nullable(),
});
/** POST /v1/tokens: a new named client token, returned once. */
export const TokenCreateRequest = z.object({ v: Version, name: TokenName, kind: TokenInfo.shape.kind });
export const TokenCreateResponse = z.object({ v: Version, id: TokenInfo.shape.id, name: z.string(), token: z.string() });
/** DELETE /v1/tokens/:idOrName revokes a client token at once (HTTP and open event streams). */
export const TokenRevokeResponse = z.object({ v: Version, id: TokenInfo.shape.id });

/** WebSocket close code of an event stream whose token was revoked or expired (RFC 6455 §7.4.2:
 *  4000–4999 are for applications). A `protocol-error` E_UNAUTHORIZED precedes it. */
export const WS_CLOSE_TOKEN_REVOKED = 4001;

/** The event stream's WebSocket subprotocol: a client offers it, the daemon selects it. */
export const EVENTS_SUBPROTOCOL = 'p2pz.v1';
/** A client may also offer `p2pz.token.<its token>` as a second subprotocol: the daemon then admits
 *  the socket from its reserve, so sockets without a token cannot crowd it out before its `hello`
 *  (docs/SECURITY.md §Event-stream admission). Never selected, so never echoed back. */
export const EVENTS_TOKEN_PROTOCOL_PREFIX = 'p2pz.token.';
