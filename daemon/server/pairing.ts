// Pairing (docs/SECURITY.md §R4, §Pairing): the daemon shows a code like `7K3Q-MXR9` (8 symbols of
// Crockford's base32, 40 bits: shared/protocol/pairing-code.ts); a client that sends it back gets its
// own token. A code expires after 5 minutes and works once. `p2pz pair` asks the running daemon for a
// fresh one (POST /v1/pairing-code, CLI token only).
//
// The rules, in the order `redeem` applies them:
//   1. The right code is accepted before any budget is looked at. The Figma plugin's iframe has the
//      origin `null`, which any page can also present from the same address, so a budget that could
//      refuse the right code would let a guessing page lock Figma out. Wrong tries can never block it.
//   2. A wrong try is counted against its source (the request's Origin with the peer address): past
//      10 wrong tries a minute, or 5 at the current code, the source is answered 429
//      E_PAIRING_RATE_LIMITED instead of 401, and its further tries are not recorded (the memory per
//      source stays bounded). These limits tell an honest client to stop; they do not stand between
//      a guess and the comparison (rule 1), so what keeps brute force out is the code's entropy
//      against the rate the daemon can answer requests at: docs/SECURITY.md §Pairing has the numbers.
import { randomInt, timingSafeEqual } from 'node:crypto';
import { formatPairingCode, normalizePairingCode, P2pzError, PAIRING_CODE } from '../../shared/protocol/index.js';

interface PairingSettings {
  readonly codeTtlMs: number;
  readonly maxWrongTries: number;
  readonly maxWrongTriesPerMinute: number;
  readonly maxSources: number;
}

export const PAIRING_DEFAULTS: PairingSettings = Object.freeze({
  /** A code's lifetime. */
  codeTtlMs: 5 * 60_000,
  /** Wrong tries at the current code from one source before it is answered 429 (the right code still works). */
  maxWrongTries: 5,
  /** Wrong tries per minute from one source before it is answered 429 (the right code still works). */
  maxWrongTriesPerMinute: 10,
  /** Sources remembered at once (only a daemon listening beyond loopback sees many addresses); the
   *  least recently seen are forgotten first. */
  maxSources: 1000,
});
export type PairingOptions = Partial<PairingSettings> & { now?: () => number };

export interface PairingCode {
  /** The shown form, `7K3Q-MXR9`. */
  readonly code: string;
  /** Epoch milliseconds. */
  readonly expiresAt: number;
}

/** What one source has done wrong: its wrong tries of the last minute, and those at the current code. */
interface SourceRecord {
  wrongTimes: number[];
  wrong: number;
  /** The code generation `wrong` counts for. */
  generation: number;
}

/** The source of a request that no network peer made (tests, in-process callers). */
export const LOCAL_SOURCE = 'local';

/** A fresh canonical code: each symbol drawn uniformly from the 32 by the CSPRNG. */
function randomCode(): string {
  let code = '';
  for (let i = 0; i < PAIRING_CODE.length; i += 1) code += PAIRING_CODE.alphabet[randomInt(0, PAIRING_CODE.alphabet.length)];
  return code;
}

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

  /** Replaces any previous code with a fresh random one; every source's wrong tries at a code start over. */
  newCode(): PairingCode {
    const code = randomCode();
    const expiresAt = this.now() + this.settings.codeTtlMs;
    this.generation += 1;
    this.current = { code, expiresAt, generation: this.generation };
    return { code: formatPairingCode(code), expiresAt };
  }

  /** Whether a code is waiting to be used. */
  active(): boolean {
    return this.current !== undefined && this.now() < this.current.expiresAt;
  }

  /**
   * Consumes the code when `code` spells it (in any form normalizePairingCode reads), whatever the
   * source's budget. Otherwise throws E_PAIRING_INVALID (wrong, expired or used), or
   * E_PAIRING_RATE_LIMITED once the source has spent its wrong tries.
   */
  redeem(code: string, source: string = LOCAL_SOURCE): void {
    const now = this.now();
    let current = this.current;
    if (current !== undefined && now >= current.expiresAt) {
      this.current = undefined;
      current = undefined;
    }
    // 1. The right code, before any budget.
    const given = normalizePairingCode(code);
    if (current !== undefined && given !== null && timingSafeEqual(Buffer.from(given, 'latin1'), Buffer.from(current.code, 'latin1'))) {
      this.current = undefined;
      return;
    }
    // 2. A wrong try, counted against its source.
    const record = this.record(source);
    record.wrongTimes = record.wrongTimes.filter((t) => now - t < 60_000);
    if (record.generation !== this.generation) {
      record.generation = this.generation;
      record.wrong = 0;
    }
    if (record.wrongTimes.length >= this.settings.maxWrongTriesPerMinute || record.wrong >= this.settings.maxWrongTries) {
      throw new P2pzError('E_PAIRING_RATE_LIMITED');
    }
    record.wrongTimes.push(now);
    record.wrong += 1;
    throw new P2pzError('E_PAIRING_INVALID');
  }

  private record(source: string): SourceRecord {
    let record = this.sources.get(source);
    if (record === undefined) {
      record = { wrongTimes: [], wrong: 0, generation: this.generation };
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
