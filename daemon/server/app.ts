// The express application: the gate in front of everything, the /v1 routes, then JSON answers for
// unknown paths (404) and for every error (express's HTML error pages never appear). Routing is
// case- and slash-strict so that the gate's list of public routes means exactly what it says.
import express, { type ErrorRequestHandler, type Express, type RequestHandler } from 'express';
import { P2pzError } from '../../shared/protocol/index.js';
import { describeError } from '../log.js';
import type { ServiceContext } from './context.js';
import type { Gate } from './gate.js';
import { sendError } from './respond.js';
import { registerHealthRoutes } from './routes/health.js';
import { registerImageRoutes } from './routes/images.js';
import { registerJobRoutes } from './routes/jobs.js';
import { registerModelRoutes } from './routes/models.js';
import { registerPageRoutes } from './routes/pages.js';
import { registerPairingRoutes } from './routes/pairing.js';
import { registerResultRoutes } from './routes/results.js';
import { registerTokenRoutes } from './routes/tokens.js';
import { registerTeamRoutes } from './routes/team.js';

/** Errors express itself raises (a malformed %-escape in a path, ...) carry an HTTP status. */
function fromExpress(err: unknown): P2pzError | undefined {
  const status = (err as { status?: unknown } | null)?.status;
  if (status === 400) return new P2pzError('E_BAD_REQUEST', 'The request path is malformed.');
  if (status === 404) return new P2pzError('E_NOT_FOUND');
  return undefined;
}

/** One debug line per answered request: method, route pattern (never the raw URL: ids and query
 *  strings stay out of the log), status and duration. */
function requestLog(ctx: ServiceContext): RequestHandler {
  return (req, res, next) => {
    const started = performance.now();
    res.on('finish', () => {
      const pattern = (req.route as { path?: unknown } | undefined)?.path;
      ctx.log.debug('http.request', {
        method: req.method,
        // Without the leading slash, so the log scrubber does not take the route for a file path.
        route: typeof pattern === 'string' ? pattern.replace(/^\//, '') : 'unrouted',
        status: res.statusCode,
        ms: Math.round(performance.now() - started),
      });
    });
    next();
  };
}

export function createApp(ctx: ServiceContext, gate: Gate): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('case sensitive routing', true);
  app.set('strict routing', true);
  app.set('query parser', false);

  app.use(requestLog(ctx));
  app.use(gate.http);
  registerHealthRoutes(app, ctx);
  registerPairingRoutes(app, ctx);
  registerTokenRoutes(app, ctx);
  registerImageRoutes(app, ctx);
  registerJobRoutes(app, ctx);
  registerResultRoutes(app, ctx);
  registerModelRoutes(app, ctx);
  registerPageRoutes(app, ctx);
  if (ctx.team !== undefined) registerTeamRoutes(app, ctx, ctx.team);

  const notFound: RequestHandler = (req, res) => sendError(req, res, new P2pzError('E_NOT_FOUND'));
  app.use(notFound);

  const onError: ErrorRequestHandler = (err: unknown, req, res, _next) => {
    const known = err instanceof P2pzError ? err : fromExpress(err);
    if (known === undefined) ctx.log.error('http.internal-error', describeError(err));
    else if (known.code === 'E_INTERNAL') ctx.log.error('http.internal-error', describeError(known));
    sendError(req, res, known ?? new P2pzError('E_INTERNAL'));
  };
  app.use(onError);
  return app;
}
