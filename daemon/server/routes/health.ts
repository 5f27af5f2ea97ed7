// GET /v1/health: the daemon's state, device, worker, models and queue counts. Open without a token
// (on loopback) so a plugin can find the daemon before pairing; it reveals nothing secret.
import type { Router } from 'express';
import { HealthResponse } from '../../../shared/protocol/index.js';
import type { ServiceContext } from '../context.js';
import { sendJson } from '../respond.js';
import { methodNotAllowed } from './methods.js';

export function registerHealthRoutes(router: Router, ctx: ServiceContext): void {
  router
    .route('/v1/health')
    .get(async (_req, res) => sendJson(res, 200, HealthResponse, await ctx.health()))
    .all(methodNotAllowed);
}
