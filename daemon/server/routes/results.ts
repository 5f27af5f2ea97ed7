// GET /v1/results/:id: a job's PNG. The id is checked against the protocol's Id before the store
// looks at it (which checks again before any file access): no client-chosen file names (docs/SECURITY.md §R20).
import { pipeline } from 'node:stream/promises';
import type { Router } from 'express';
import { P2pzError } from '../../../shared/protocol/index.js';
import type { ServiceContext } from '../context.js';
import { pathId } from './jobs.js';
import { methodNotAllowed } from './methods.js';

export function registerResultRoutes(router: Router, ctx: ServiceContext): void {
  router
    .route('/v1/results/:id')
    .get(async (req, res) => {
      // Streamed from disk: a download holds a stream buffer, never the whole file (docs/SECURITY.md
      // §Memory bound).
      const found = await ctx.results.stream(pathId(req.params['id']));
      if (found === undefined) throw new P2pzError('E_NOT_FOUND');
      res.status(200);
      res.setHeader('Content-Type', found.meta.mime);
      res.setHeader('Content-Length', found.meta.size);
      res.setHeader('Content-Disposition', 'inline');
      await pipeline(found.stream, res).catch(() => {
        // The client went away mid-download; nothing to answer.
        res.destroy();
      });
    })
    .all(methodNotAllowed);
}
