// Pairing (R4): the daemon shows a 6-digit code; a client that sends it back gets its own token. A
// code expires after 5 minutes, works once, and is burnt after 5 wrong tries; all attempts together
// are capped per minute, so guessing 10^6 codes is hopeless. `p2pz pair` asks the running daemon for
// a fresh code (POST /v1/pairing-code, CLI token only).
import { randomInt, timingSafeEqual } from 'node:crypto';
import { P2pzError } from '../../shared/protocol/index.js';

interface PairingSettings {
  readonly codeTtlMs: number;
  readonly maxWrongTries: number;
  readonly maxAttemptsPerMinute: number;
}

export const PAIRING_DEFAULTS: PairingSettings = Object.freeze({
  /** A code's lifetime. */
  codeTtlMs: 5 * 60_000,
  /** Wrong codes before the current code is burnt (a fresh one is needed). */
  maxWrongTries: 5,
  /** Pairing attempts (right or wrong) accepted per minute, for all clients together. */
  maxAttemptsPerMinute: 10,
});
export type PairingOptions = Partial<PairingSettings> & { now?: () => number };

export interface PairingCode {
  readonly code: string;
  /** Epoch milliseconds. */
  readonly expiresAt: number;
}

export class Pairing {
  private current: { code: string; expiresAt: number; wrong: number } | undefined;
  private attempts: number[] = [];
  private readonly settings: PairingSettings;
  private readonly now: () => number;

  constructor(options: PairingOptions = {}) {
    const { now, ...settings } = options;
    this.settings = { ...PAIRING_DEFAULTS, ...settings };
    // Date.now at call time, so that fake timers apply.
    this.now = now ?? (() => Date.now());
  }

  /** Replaces any previous code with a fresh random one. */
  newCode(): PairingCode {
    const code = String(randomInt(0, 1_000_000)).padStart(6, '0');
    const expiresAt = this.now() + this.settings.codeTtlMs;
    this.current = { code, expiresAt, wrong: 0 };
    return { code, expiresAt };
  }

  /** Whether a code is waiting to be used. */
  active(): boolean {
    return this.current !== undefined && this.now() < this.current.expiresAt;
  }

  /**
   * Consumes the code when `code` matches; throws E_PAIRING_RATE_LIMITED past the per-minute cap and
   * E_PAIRING_INVALID for a wrong, expired, used or burnt code.
   */
  redeem(code: string): void {
    const now = this.now();
    this.attempts = this.attempts.filter((t) => now - t < 60_000);
    if (this.attempts.length >= this.settings.maxAttemptsPerMinute) throw new P2pzError('E_PAIRING_RATE_LIMITED');
    this.attempts.push(now);
    const current = this.current;
    if (current === undefined || now >= current.expiresAt) {
      this.current = undefined;
      throw new P2pzError('E_PAIRING_INVALID');
    }
    const given = Buffer.from(code, 'utf8');
    const expected = Buffer.from(current.code, 'utf8');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      current.wrong += 1;
      if (current.wrong >= this.settings.maxWrongTries) this.current = undefined;
      throw new P2pzError('E_PAIRING_INVALID');
    }
    this.current = undefined;
  }
}
