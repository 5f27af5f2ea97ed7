// The answer for a known path with a method it does not have: 405, never express's HTML page.
import type { RequestHandler } from 'express';
import { P2pzError } from '../../../shared/protocol/index.js';

export const methodNotAllowed: RequestHandler = () => {
  throw new P2pzError('E_METHOD_NOT_ALLOWED');
};
