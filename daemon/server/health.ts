// The daemon's health as clients see it (GET /v1/health and the WebSocket `welcome`): the engine's
// state mapped to the service state, the device, installed models and queue counts.
import { PROTOCOL_VERSION, type DurationSample, type HealthResponse, type InstalledModel } from '../../shared/protocol/index.js';
import type { EngineHealth } from '../jobs/engine.js';

export interface HealthInputs {
  readonly version: string;
  readonly engine: EngineHealth;
  readonly queue: { readonly running: number; readonly queued: number };
  readonly models: InstalledModel[];
  readonly stopping: boolean;
  /** The last renders on the engine's device (daemon/jobs/durations.ts). */
  readonly durations?: readonly DurationSample[];
}

/** `starting` until the worker is up; `degraded` while it restarts, loops or is stopped. */
export function serviceState(engine: EngineHealth['state'], stopping: boolean): HealthResponse['state'] {
  if (stopping) return 'stopping';
  if (engine === 'starting') return 'starting';
  if (engine === 'ready' || engine === 'busy') return 'ready';
  return 'degraded';
}

export function buildHealth(input: HealthInputs): HealthResponse {
  const { engine } = input;
  return {
    v: PROTOCOL_VERSION,
    name: 'p2pz',
    version: input.version,
    state: serviceState(engine.state, input.stopping),
    device: engine.device,
    worker: {
      state: engine.state,
      restarts: engine.restarts,
      recentCrashes: engine.recentCrashes,
      ...(engine.lastCrash === undefined ? {} : { lastCrash: engine.lastCrash.slice(0, 300) }),
    },
    models: input.models,
    queue: { running: input.queue.running, queued: input.queue.queued },
    ...(engine.team === undefined ? {} : { team: engine.team }),
    ...(input.durations?.length ? { durations: input.durations.slice(-20) } : {}),
  };
}
