// Jobs: POST /v1/jobs (JobSubmit → the queue), GET /v1/jobs/:id (state), DELETE /v1/jobs/:id
// (cancel, acknowledged at once). Events for these jobs go to the WebSocket of the same client
// (`x-p2pz-client`).
import type { Router } from 'express';
import { Id, JobResponse, JobSubmit, P2pzError, PROTOCOL_VERSION } from '../../../shared/protocol/index.js';
import { principalOf } from '../auth.js';
import { readJson } from '../body.js';
import { clientKey, requestClientId } from '../clients.js';
import type { ServiceContext } from '../context.js';
import { sendJson } from '../respond.js';
import { methodNotAllowed } from './methods.js';

/** A path id checked against the protocol's Id before use (docs/SECURITY.md §R20). */
export function pathId(value: unknown): string {
  const parsed = Id.safeParse(value);
  if (!parsed.success) throw new P2pzError('E_BAD_REQUEST', 'The id in the path is malformed.');
  return parsed.data;
}

export function registerJobRoutes(router: Router, ctx: ServiceContext): void {
  router
    .route('/v1/jobs')
    .post(async (req, res) => {
      const principal = principalOf(res);
      const client = clientKey(principal, requestClientId(req));
      const { v: _v, ...request } = await readJson(req, JobSubmit, ctx.limits);
      // A hold, not the bytes: the queue checks its bounds first, and the job reads the file when it
      // starts (docs/SECURITY.md §Memory bound).
      const upload = ctx.uploads.hold(request.imageId);
      if (upload === undefined) {
        throw new P2pzError('E_NOT_FOUND', 'The uploaded image is unknown or has expired.', 'Upload the image again (POST /v1/images), then submit the job.');
      }
      const job = ctx.queue.submit(client, request, upload, principal.tokenId);
      sendJson(res, 202, JobResponse, { v: PROTOCOL_VERSION, job });
    })
    .all(methodNotAllowed);

  router
    .route('/v1/jobs/:id')
    .get((req, res) => {
      const jobId = pathId(req.params['id']);
      const job = ctx.queue.get(clientKey(principalOf(res), requestClientId(req)), jobId);
      sendJson(res, 200, JobResponse, { v: PROTOCOL_VERSION, job });
    })
    .delete((req, res) => {
      const jobId = pathId(req.params['id']);
      const job = ctx.queue.cancel(clientKey(principalOf(res), requestClientId(req)), jobId);
      sendJson(res, 200, JobResponse, { v: PROTOCOL_VERSION, job });
    })
    .all(methodNotAllowed);
}
