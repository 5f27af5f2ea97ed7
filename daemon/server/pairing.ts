// Pairing (docs/SECURITY.md §R4): the daemon shows a 6-digit code; a client that sends it back gets its own token. A
// code expires after 5 minutes and works once. Guessing is bounded per source (the request's Origin
// together with the peer address): each source may try 10 times a minute, and after 5 wrong tries
// from one source the code is burnt *for that source* only. A page can only ever speak as the origin
// `null` (the other allowed origins are Photopea's and the daemon's own), so a jamming page blocks
// no other source, and its guesses are bounded by its own budget: 5 per code. `p2pz pair` asks the
// running daemon for a fresh code (POST /v1/pairing-code, CLI token only), with every source's
// budget fresh. docs/SECURITY.md §Pairing.
import { randomInt, timingSafeEqual } from 'node:crypto';
import { P2pzError } from '../../shared/protocol/index.js';

interface PairingSettings {
  readonly codeTtlMs: number;
  readonly maxWrongTries: number;
  readonly maxAttemptsPerMinute: number;
  readonly maxSources: number;
}

export const PAIRING_DEFAULTS: PairingSettings = Object.freeze({
  /** A code's lifetime. */
  codeTtlMs: 5 * 60_000,
  /** Wrong codes from one source before the current code is burnt for that source. */
  maxWrongTries: 5,
  /** Pairing attempts (right or wrong) accepted per minute from one source. */
  maxAttemptsPerMinute: 10,
  /** Sources remembered at once (only a daemon listening beyond loopback sees many addresses); the
   *  least recently seen are forgotten first. */
  maxSources: 1000,
});
export type PairingOptions = Partial<PairingSettings> & { now?: () => number };

export interface PairingCode {
  readonly code: string;
  /** Epoch milliseconds. */
  readonly expiresAt: number;
}

/** What one source has done: its attempts of the last minute, and its wrong tries at the current code. */
interface SourceRecord {
  attempts: number[];
  wrong: number;
  /** The code generation `wrong` counts for. */
  generation: number;
}

/** The source of a request that no network peer made (tests, in-process callers). */
export const LOCAL_SOURCE = 'local';

export class Pairing {
  private current: { code: string; expiresAt: number; generation: number } | undefined;
  private generation = 0;
  private readonly sources = new Map<string, SourceRecord>();
  private readonly settings: PairingSettings;
  private readonly now: () => number;

  constructor(options: PairingOptions = {}) {
    const { now, ...settings } = options;
    this.settings = { ...PAIRING_DEFAULTS, ...settings };
    // Date.now at call time, so that fake timers apply.
    this.now = now ?? (() => Date.now());
  }

  /** Replaces any previous code with a fresh random one; every source's wrong tries start over. */
  newCode(): PairingCode {
    const code = String(randomInt(0, 1_000_000)).padStart(6, '0');
    const expiresAt = this.now() + this.settings.codeTtlMs;
    this.generation += 1;
    this.current = { code, expiresAt, generation: this.generation };
    return { code, expiresAt };
  }

  /** Whether a code is waiting to be used. */
  active(): boolean {
    return this.current !== undefined && this.now() < this.current.expiresAt;
  }

  /**
   * Consumes the code when `code` matches; throws E_PAIRING_RATE_LIMITED past the source's per-minute
   * cap and E_PAIRING_INVALID for a wrong, expired or used code, or one this source has burnt.
   */
  redeem(code: string, source: string = LOCAL_SOURCE): void {
    const now = this.now();
    const record = this.record(source);
    record.attempts = record.attempts.filter((t) => now - t < 60_000);
    if (record.attempts.length >= this.settings.maxAttemptsPerMinute) throw new P2pzError('E_PAIRING_RATE_LIMITED');
    record.attempts.push(now);
    const current = this.current;
    if (current === undefined || now >= current.expiresAt) {
      this.current = undefined;
      throw new P2pzError('E_PAIRING_INVALID');
    }
    if (record.generation !== current.generation) {
      record.generation = current.generation;
      record.wrong = 0;
    }
    if (record.wrong >= this.settings.maxWrongTries) throw new P2pzError('E_PAIRING_INVALID');
    const given = Buffer.from(code, 'utf8');
    const expected = Buffer.from(current.code, 'utf8');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      record.wrong += 1;
      throw new P2pzError('E_PAIRING_INVALID');
    }
    this.current = undefined;
  }

  private record(source: string): SourceRecord {
    let record = this.sources.get(source);
    if (record === undefined) {
      record = { attempts: [], wrong: 0, generation: this.generation };
      if (this.sources.size >= this.settings.maxSources) {
        const oldest = this.sources.keys().next().value;
        if (oldest !== undefined) this.sources.delete(oldest);
      }
    } else {
      // Most recently seen last, so the first key is the one to forget.
      this.sources.delete(source);
    }
    this.sources.set(source, record);
    return record;
  }
}
