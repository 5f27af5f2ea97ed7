// GET /v1/results/:id: a job's PNG. The id is checked against the protocol's Id before the store
// looks at it (which checks again before any file access): no client-chosen file names (R20).
import type { Router } from 'express';
import { P2pzError } from '../../../shared/protocol/index.js';
import type { ServiceContext } from '../context.js';
import { pathId } from './jobs.js';
import { methodNotAllowed } from './methods.js';

export function registerResultRoutes(router: Router, ctx: ServiceContext): void {
  router
    .route('/v1/results/:id')
    .get(async (req, res) => {
      const found = await ctx.results.get(pathId(req.params['id']));
      if (found === undefined) throw new P2pzError('E_NOT_FOUND');
      res.status(200);
      res.setHeader('Content-Type', found.meta.mime);
      res.setHeader('Content-Length', found.bytes.byteLength);
      res.setHeader('Content-Disposition', 'inline');
      res.end(found.bytes);
    })
    .all(methodNotAllowed);
}
