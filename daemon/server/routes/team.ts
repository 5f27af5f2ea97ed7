// The team routes a GPU worker uses (docs/TEAM.md), open only to worker tokens: the input image of a
// job it runs, and the outputs it made. The endpoint holds these bytes only while the job runs
// (daemon/team/team-engine.ts); an unknown, finished or cancelled job is E_NOT_FOUND, which tells the
// worker to drop it. Absent when the daemon is not a team endpoint.
import type { Response, Router } from 'express';
import { P2pzError } from '../../../shared/protocol/index.js';
import { orientedSize, sniffImage } from '../../image/sniff.js';
import type { TeamExchange } from '../../team/team-engine.js';
import { principalOf } from '../auth.js';
import { readImage } from '../body.js';
import type { ServiceContext } from '../context.js';
import { pathId } from './jobs.js';
import { methodNotAllowed } from './methods.js';

function requireWorker(res: Response): void {
  if (principalOf(res).kind !== 'worker') {
    throw new P2pzError('E_UNAUTHORIZED', 'Only a GPU worker of the team may do this.', 'Start `p2pz worker` with a worker token (`p2pz tokens create NAME --worker`).');
  }
}

export function registerTeamRoutes(router: Router, ctx: ServiceContext, team: TeamExchange): void {
  router
    .route('/v1/team/jobs/:id/input')
    .get((req, res) => {
      requireWorker(res);
      const bytes = team.input(pathId(req.params['id']));
      if (bytes === undefined) throw new P2pzError('E_NOT_FOUND', 'This job is not running on the team any more.');
      res.status(200);
      res.setHeader('Content-Type', `image/${sniffImage(bytes).format}`);
      res.setHeader('Content-Length', bytes.byteLength);
      res.end(bytes);
    })
    .all(methodNotAllowed);

  router
    .route('/v1/team/jobs/:id/outputs/:role')
    .put(async (req, res) => {
      requireWorker(res);
      const role = req.params['role'];
      if (role !== 'image' && role !== 'mask') throw new P2pzError('E_NOT_FOUND');
      const { mime, bytes } = await readImage(req, ctx.limits);
      const header = sniffImage(bytes);
      if (mime !== 'image/png' || header.format !== 'png') throw new P2pzError('E_IMAGE_FORMAT', 'Team outputs are PNG files.');
      const { width, height } = orientedSize(header);
      if (!team.putOutput(pathId(req.params['id']), { role, png: bytes, width, height })) {
        throw new P2pzError('E_NOT_FOUND', 'This job is not running on the team any more.');
      }
      res.status(204).end();
    })
    .all(methodNotAllowed);
}
