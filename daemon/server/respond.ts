// How the service answers: JSON bodies checked against their protocol schema, and errors always as
// `{v, code, message, hint}` with the status of their code. Anything that is not a P2pzError becomes
// E_INTERNAL: clients never see a stack, a path or a token (docs/SECURITY.md §R21).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { z } from 'zod';
import { ERRORS, P2pzError, PROTOCOL_VERSION, type ErrorResponse } from '../../shared/protocol/index.js';

/** Headers on every answer: nothing is cached, nothing is sniffed. */
export function setCommonHeaders(res: ServerResponse): void {
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Content-Type-Options', 'nosniff');
}

export function toP2pzError(err: unknown): P2pzError {
  return err instanceof P2pzError ? err : new P2pzError('E_INTERNAL');
}

export function errorBody(err: P2pzError): ErrorResponse {
  return { v: PROTOCOL_VERSION, ...err.toBody() };
}

/** True when the request still has body bytes the service has not read. */
function bodyPending(req: IncomingMessage): boolean {
  return !req.readableEnded && (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0' || req.headers['transfer-encoding'] !== undefined);
}

/**
 * Sends an error. When the request body was not read (a 413 or 415 decided from the headers), the
 * connection is closed after the answer, so the rest of the body is never buffered (docs/SECURITY.md §R8).
 */
export function sendError(req: IncomingMessage, res: ServerResponse, err: P2pzError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  setCommonHeaders(res);
  if (bodyPending(req)) res.setHeader('Connection', 'close');
  if (err.code === 'E_METHOD_NOT_ALLOWED') res.setHeader('Allow', 'GET, POST, DELETE, OPTIONS');
  const body = JSON.stringify(errorBody(err));
  res.statusCode = ERRORS[err.code].status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
}

/** Sends a JSON body after checking it against its schema (a bug here is ours: E_INTERNAL). */
export function sendJson<S extends z.ZodType>(res: ServerResponse, status: number, schema: S, body: z.input<S>): void {
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw new P2pzError('E_INTERNAL');
  const text = JSON.stringify(parsed.data);
  setCommonHeaders(res);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(text);
}
