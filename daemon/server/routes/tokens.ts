// The owner's token management (issue docs/SECURITY.md §R4: revocable tokens), for `p2pz tokens`: GET /v1/tokens lists
// the client tokens (name, created, last used), POST /v1/tokens creates a named one (returned once),
// DELETE /v1/tokens/:idOrName revokes one at once: its next request gets 401 and its open event
// streams are closed (ws.ts). All three need the CLI token: a paired plugin cannot see or revoke the
// others. (A client revokes its own token with DELETE /v1/tokens/current, routes/pairing.ts.)
import type { Router } from 'express';
import {
  PROTOCOL_VERSION,
  TokenCreateRequest,
  TokenCreateResponse,
  TokenRevokeResponse,
  TokensResponse,
} from '../../../shared/protocol/index.js';
import { principalOf, requireCli } from '../auth.js';
import { readJson } from '../body.js';
import type { ServiceContext } from '../context.js';
import { sendJson } from '../respond.js';
import { methodNotAllowed } from './methods.js';

export function registerTokenRoutes(router: Router, ctx: ServiceContext): void {
  router
    .route('/v1/tokens')
    .get((_req, res) => {
      requireCli(principalOf(res));
      sendJson(res, 200, TokensResponse, { v: PROTOCOL_VERSION, tokens: ctx.tokens.list(), expireUnusedDays: ctx.tokens.expireUnusedDays() });
    })
    .post(async (req, res) => {
      requireCli(principalOf(res));
      const body = await readJson(req, TokenCreateRequest, ctx.limits);
      const { id, token } = await ctx.tokens.issue(body.name, body.kind);
      ctx.log.info('token.created', { tokenId: id });
      sendJson(res, 200, TokenCreateResponse, { v: PROTOCOL_VERSION, id, name: body.name, token });
    })
    .all(methodNotAllowed);

  router
    .route('/v1/tokens/:idOrName')
    .delete(async (req, res) => {
      requireCli(principalOf(res));
      const id = ctx.tokens.resolve(String(req.params['idOrName']));
      await ctx.tokens.revoke(id);
      ctx.log.info('token.revoked', { tokenId: id, by: 'owner' });
      sendJson(res, 200, TokenRevokeResponse, { v: PROTOCOL_VERSION, id });
    })
    .all(methodNotAllowed);
}
