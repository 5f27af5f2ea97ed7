// Pairing and tokens: POST /v1/pair (code → a new client token; no token needed), POST
// /v1/pairing-code (CLI token: a fresh code, as `p2pz pair` prints it), DELETE /v1/tokens/current
// (a client revokes its own token, e.g. when the plugin "forgets" the daemon).
import type { Router } from 'express';
import { P2pzError, PairingCodeRequest, PairingCodeResponse, PairRequest, PairResponse, PROTOCOL_VERSION } from '../../../shared/protocol/index.js';
import { principalOf, requireCli } from '../auth.js';
import { readJson } from '../body.js';
import type { ServiceContext } from '../context.js';
import { sendJson } from '../respond.js';
import { methodNotAllowed } from './methods.js';

export function registerPairingRoutes(router: Router, ctx: ServiceContext): void {
  router
    .route('/v1/pair')
    .post(async (req, res) => {
      const body = await readJson(req, PairRequest, ctx.limits);
      // Guesses are counted per source: the Origin and the peer address (docs/SECURITY.md §Pairing).
      ctx.pairing.redeem(body.code, `${req.headers.origin ?? '-'} ${req.socket.remoteAddress ?? '-'}`);
      const { id, token } = await ctx.tokens.issue(body.client);
      ctx.log.info('pairing.paired', { tokenId: id, client: body.client });
      sendJson(res, 200, PairResponse, { v: PROTOCOL_VERSION, token });
    })
    .all(methodNotAllowed);

  router
    .route('/v1/pairing-code')
    .post(async (req, res) => {
      requireCli(principalOf(res));
      await readJson(req, PairingCodeRequest, ctx.limits);
      const { code, expiresAt } = ctx.pairing.newCode();
      ctx.log.info('pairing.code-issued');
      sendJson(res, 200, PairingCodeResponse, { v: PROTOCOL_VERSION, code, expiresAt });
    })
    .all(methodNotAllowed);

  router
    .route('/v1/tokens/current')
    .delete(async (_req, res) => {
      const principal = principalOf(res);
      if (principal.kind === 'cli') {
        throw new P2pzError('E_BAD_REQUEST', 'The command-line token cannot be revoked over HTTP.', 'Delete the token file and restart the daemon to replace it.');
      }
      await ctx.tokens.revoke(principal.tokenId);
      ctx.log.info('token.revoked', { tokenId: principal.tokenId });
      res.status(204).end();
    })
    .all(methodNotAllowed);
}
