// Beam search against answers worked out by hand on scripted logits (transformers 4.26's
// BeamSearchScorer semantics, which BLIP's captioner ran with): beams beat greedy, eos is held back
// until min_length, hypotheses are length-normalized, the search stops early when no running beam can
// win, and the repetition penalty scales log-probs of tokens already present.
import { describe, expect, it } from 'vitest';
import { beamSearch, logSoftmax, type BeamSearchOptions } from '../../../../daemon/pipeline/captioner/beam-search.js';

const EOS = 0;
const OPTS: BeamSearchOptions = { numBeams: 2, maxLength: 6, minLength: 0, repetitionPenalty: 1, lengthPenalty: 1, eosId: EOS };

/** Logits whose softmax is exactly `probs` (log p; rows need not be normalized beforehand). */
function fromProbs(probs: readonly number[]): Float32Array {
  return Float32Array.from(probs, (p) => (p > 0 ? Math.log(p) : -1e4));
}

/** A scripted model: the next-token distribution depends on the row's tokens after the prompt. */
function scripted(table: Record<string, readonly number[]>, fallback: readonly number[]) {
  const calls: { rows: number[][]; parents: readonly number[] | null }[] = [];
  const next = async (rows: readonly (readonly number[])[], parents: readonly number[] | null) => {
    calls.push({ rows: rows.map((r) => [...r]), parents });
    return rows.map((r) => fromProbs(table[r.slice(1).join(',')] ?? fallback));
  };
  return { next, calls };
}

describe('beamSearch', () => {
  it('logSoftmax is log(p) for logits log(p)', () => {
    const s = logSoftmax(Float32Array.of(Math.log(0.2), Math.log(0.3), Math.log(0.5)));
    expect(Array.from(s).map((v) => Math.exp(v))).toEqual([expect.closeTo(0.2, 6), expect.closeTo(0.3, 6), expect.closeTo(0.5, 6)]);
  });

  it('two beams find the sequence greedy misses (0.4·0.9 beats 0.6·0.5), and length normalization favours longer hypotheses', async () => {
    // Vocabulary: 0 eos, 1 "a", 2 "b", 3 "c". After the prompt [9]: a 0.6, b 0.4.
    // After a: c 0.5, eos 0.5 → best a·eos = 0.3; after b: eos 0.9 → b·eos = 0.36 (greedy would say a).
    const { next } = scripted({
      '': [0, 0.6, 0.4, 0],
      '1': [0.5, 0, 0, 0.5],
      '2': [0.9, 0, 0, 0.1],
      '1,3': [1, 0, 0, 0],
      '2,3': [1, 0, 0, 0],
    }, [1, 0, 0, 0]);
    // Without length normalization (α = 0) the sums decide: b·eos = log 0.36 > a·eos = a·c·eos = log 0.3,
    // and once both hypotheses are in, no running beam (best log 0.3) can beat the worst: stop.
    const r = await beamSearch([9], next, { ...OPTS, lengthPenalty: 0 });
    expect(r).toEqual({ sequence: [9, 2], score: expect.closeTo(Math.log(0.36), 6), finished: true });
    // With α = 1 (generate's default) the score is log p / length (prompt included, eos not), which
    // favours the longer a·c: log 0.3 / 3 = −0.40 beats log 0.36 / 2 = −0.51.
    const n = await beamSearch([9], next, OPTS);
    expect(n).toEqual({ sequence: [9, 1, 3], score: expect.closeTo(Math.log(0.3) / 3, 6), finished: true });
  });

  it('min_length holds eos back until the sequence (prompt included) is that long', async () => {
    const { next } = scripted({ '': [0.7, 0.3, 0, 0], '1': [0.7, 0, 0.3, 0], '1,2': [0.7, 0, 0, 0.3] }, [1, 0, 0, 0]);
    const r = await beamSearch([9], next, { ...OPTS, numBeams: 1, minLength: 3 });
    expect(r.sequence).toEqual([9, 1, 2]);
  });

  it('reorders beams by their parents, and stops at max_length with the best running beam', async () => {
    const { next, calls } = scripted({}, [0, 0.5, 0.3, 0.2]);
    const r = await beamSearch([9], next, { ...OPTS, maxLength: 4 });
    expect(r.sequence).toEqual([9, 1, 1, 1]);
    expect(r.finished).toBe(false);
    expect(r.score).toBeCloseTo((3 * Math.log(0.5)) / 4, 6);
    expect(calls.map((c) => c.rows.length)).toEqual([2, 2, 2]);
    expect(calls[0]!.parents).toBeNull();
    // Step 1 only row 0 is live: both continuations come from it (tokens 1 and 2).
    expect(calls[1]).toEqual({ rows: [[9, 1], [9, 2]], parents: [0, 0] });
    // Step 2: 1·1 (0.25) and 1·2 (0.15) beat 2·1 (0.15 — a tie, row 0 first) …
    expect(calls[2]!.parents).toEqual([0, 0]);
  });

  it('stops early once no running beam can beat the finished hypotheses', async () => {
    // eos at once with 0.9 (score log 0.9 / 1); the other path needs two more tokens at p ≤ 0.1.
    const { calls, next } = scripted({ '': [0.9, 0.05, 0.05, 0] }, [0.5, 0.25, 0.25, 0]);
    const r = await beamSearch([9], next, { ...OPTS, maxLength: 10 });
    expect(r.sequence).toEqual([9]);
    expect(r.score).toBeCloseTo(Math.log(0.9), 6);
    expect(calls.length).toBeLessThan(4);
  });

  it('the repetition penalty divides positive and multiplies negative log-probs of tokens already in the row', async () => {
    // Without penalty "1" repeats (0.6 > 0.4); with θ = 2, log 0.6·2 = −1.02 < log 0.4 = −0.92, so 2 wins.
    const { next } = scripted({ '': [0, 1, 0, 0], '1': [0, 0.6, 0.4, 0] }, [1, 0, 0, 0]);
    expect((await beamSearch([9], next, { ...OPTS, numBeams: 1, maxLength: 3 })).sequence).toEqual([9, 1, 1]);
    expect((await beamSearch([9], next, { ...OPTS, numBeams: 1, maxLength: 3, repetitionPenalty: 2 })).sequence).toEqual([9, 1, 2]);
  });
});
