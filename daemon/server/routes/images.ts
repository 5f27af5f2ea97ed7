// POST /v1/images: the raw image with its exact Content-Type. The header is sniffed before anything
// is stored: wrong magic bytes → E_IMAGE_FORMAT, too many pixels → E_IMAGE_TOO_LARGE, both in
// milliseconds and without decoding (docs/SECURITY.md §R9; decoding happens in the worker). The upload is kept under a
// server-generated id for POST /v1/jobs, and passed to the engine as a hint (JobEngine.prefetch): the
// worker decodes it in its idle time for the quick preview that usually follows.
import type { Router } from 'express';
import { ImageUploadResponse, P2pzError, PROTOCOL_VERSION } from '../../../shared/protocol/index.js';
import { orientedSize, sniffImage } from '../../image/sniff.js';
import { principalOf } from '../auth.js';
import { readImage } from '../body.js';
import type { ServiceContext } from '../context.js';
import { sendJson } from '../respond.js';
import { methodNotAllowed } from './methods.js';

export function registerImageRoutes(router: Router, ctx: ServiceContext): void {
  router
    .route('/v1/images')
    .post(async (req, res) => {
      // The gate has checked the declared length against the limit; a chunked upload may use it all.
      const declared = Number(req.headers['content-length'] ?? ctx.limits.imageBytes);
      const release = ctx.uploadBudget.reserve(principalOf(res).tokenId, Math.min(declared, ctx.limits.imageBytes));
      try {
        const { mime, bytes } = await readImage(req, ctx.limits);
        const header = sniffImage(bytes);
        if (`image/${header.format}` !== mime) {
          throw new P2pzError('E_IMAGE_FORMAT', `The bytes are ${header.format.toUpperCase()} but the Content-Type says ${mime}.`, 'Send the image with the Content-Type of its real format.');
        }
        const { width, height } = orientedSize(header);
        const stored = await ctx.uploads.put(bytes, { mime, width, height });
        // Before the answer, so that the engine hears of the upload before any job that reads it.
        ctx.queue.prefetch(bytes, stored.id);
        sendJson(res, 201, ImageUploadResponse, { v: PROTOCOL_VERSION, imageId: stored.id, width, height, format: header.format });
      } finally {
        release();
      }
    })
    .all(methodNotAllowed);
}
