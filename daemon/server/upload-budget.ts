// How many upload bytes may be arriving at once. An upload is read into memory (the sniffer needs
// the header, and a WebP's header check needs the whole RIFF), so without a bound 256 connections of
// 50 MiB each would be 12.5 GiB. Each upload reserves its declared length (the image limit when it is
// chunked) before a byte is read, against a total and a per-token share: one token can never take the
// whole budget, and the reservation ends when the upload is stored or refused. docs/SECURITY.md
// §Memory bound.
import { P2pzError } from '../../shared/protocol/index.js';

export interface UploadBudgetSettings {
  /** Upload bytes in memory at once, all tokens together. */
  readonly totalBytes: number;
  /** Upload bytes in memory at once for one token. */
  readonly perTokenBytes: number;
}

export class UploadBudget {
  private used = 0;
  private readonly byToken = new Map<string, number>();

  constructor(private readonly settings: UploadBudgetSettings) {}

  /** Reserves `bytes` for `tokenId`; returns the release function (idempotent). Throws
   *  E_RATE_LIMITED when the token's share or the total would be exceeded. */
  reserve(tokenId: string, bytes: number): () => void {
    const own = this.byToken.get(tokenId) ?? 0;
    if (own + bytes > this.settings.perTokenBytes || this.used + bytes > this.settings.totalBytes) {
      throw new P2pzError('E_RATE_LIMITED', 'Other uploads are still arriving.', 'Wait for them to finish, then send this image again.');
    }
    this.used += bytes;
    this.byToken.set(tokenId, own + bytes);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.used -= bytes;
      const left = (this.byToken.get(tokenId) ?? bytes) - bytes;
      if (left > 0) this.byToken.set(tokenId, left);
      else this.byToken.delete(tokenId);
    };
  }

  /** Bytes reserved now (all tokens). */
  inUse(): number {
    return this.used;
  }
}
