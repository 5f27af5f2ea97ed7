// GET /v1/models: the installed diffusion models and GAN preview generators.
import type { Router } from 'express';
import { ModelsResponse, PROTOCOL_VERSION } from '../../../shared/protocol/index.js';
import type { ServiceContext } from '../context.js';
import { sendJson } from '../respond.js';
import { methodNotAllowed } from './methods.js';

export function registerModelRoutes(router: Router, ctx: ServiceContext): void {
  router
    .route('/v1/models')
    .get(async (_req, res) => sendJson(res, 200, ModelsResponse, { v: PROTOCOL_VERSION, models: await ctx.models() }))
    .all(methodNotAllowed);
}
