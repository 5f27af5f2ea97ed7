// Beam search as transformers' `generate(num_beams=k)` does it in the version BLIP's captioner was
// released with (LAVIS pins transformers 4.25–4.26: BeamSearchScorer, BeamHypotheses), so that a
// caption is the one the paper's code would write for the same logits:
//   s_t = log_softmax(logits_t)                         per beam row, [V]
//   processors on s_t: min_length → s_t[eos] = −∞ while the sequence (prompt included) is shorter than
//     min_length; repetition penalty θ → s_t[v] = s_t[v]·θ if < 0 else s_t[v]/θ for every v already in
//     the row (θ = 1: no change)
//   candidates: the 2k best (beam score + s_t[v]) over all rows and tokens (ties: lower index first);
//     at the start only row 0 is live (the other rows start at −1e9)
//   a candidate ending in eos with rank < k becomes a finished hypothesis (its tokens without eos,
//     score = sum of log-probs / len^α, len = its length, prompt included); the first k others continue
//   stop when k hypotheses are finished and none of the running beams can beat the worst of them
//     (best running score / cur_len^α ≤ worst), or at max_length; then every running beam is offered
//     as a hypothesis and the best one is the answer.
import { P2pzError } from '../../../shared/protocol/index.js';

export interface BeamSearchOptions {
  readonly numBeams: number;
  /** Longest sequence, prompt included (generate's max_length). */
  readonly maxLength: number;
  /** Shortest sequence before eos may end it, prompt included (generate's min_length). */
  readonly minLength: number;
  readonly repetitionPenalty: number;
  /** α of the length normalization (1 in generate's defaults). */
  readonly lengthPenalty: number;
  readonly eosId: number;
  readonly signal?: AbortSignal;
}

/**
 * The model's next-token logits for each row. `parents` says, for each row, which row of the previous
 * call it continues (null on the first call, where every row is the prompt): the caller reorders its
 * key/value cache by it and feeds each row's last token.
 */
export type NextTokenLogits = (rows: readonly (readonly number[])[], parents: readonly number[] | null) => Promise<Float32Array[]>;

export interface BeamSearchResult {
  /** The best hypothesis, prompt included, without eos. */
  readonly sequence: readonly number[];
  /** Its normalized score (sum of log-probs / length^α). */
  readonly score: number;
  /** True when it ended with eos, false when it reached max_length. */
  readonly finished: boolean;
}

interface Hypothesis {
  readonly tokens: readonly number[];
  readonly score: number;
  readonly finished: boolean;
}

/** log_softmax over one row, in float64. */
export function logSoftmax(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(logits, (v) => v - lse);
}

export async function beamSearch(prompt: readonly number[], next: NextTokenLogits, o: BeamSearchOptions): Promise<BeamSearchResult> {
  const k = o.numBeams;
  if (!Number.isInteger(k) || k < 1) throw new P2pzError('E_INTERNAL', 'beamSearch: numBeams must be a positive integer.');
  if (prompt.length === 0 || prompt.length >= o.maxLength) throw new P2pzError('E_INTERNAL', 'beamSearch: the prompt must be shorter than maxLength.');
  const hyps: Hypothesis[] = [];
  let worst = Infinity;
  const norm = (sum: number, len: number): number => sum / len ** o.lengthPenalty;
  const offer = (tokens: readonly number[], sum: number, finished: boolean): void => {
    const score = norm(sum, tokens.length);
    if (hyps.length < k || score > worst) {
      hyps.push({ tokens, score, finished });
      if (hyps.length > k) {
        let w = 0;
        for (let i = 1; i < hyps.length; i++) if (hyps[i]!.score < hyps[w]!.score) w = i;
        hyps.splice(w, 1);
        worst = Math.min(...hyps.map((h) => h.score));
      } else {
        worst = Math.min(worst, score);
      }
    }
  };

  let rows: number[][] = Array.from({ length: k }, () => [...prompt]);
  let beamScores: number[] = Array.from({ length: k }, (_, i) => (i === 0 ? 0 : -1e9));
  let parents: number[] | null = null;
  let done = false;
  while (!done) {
    o.signal?.throwIfAborted();
    const logits = await next(rows, parents);
    if (logits.length !== k) throw new P2pzError('E_MODEL_INVALID', `The captioner's decoder returned ${logits.length} rows for ${k} beams.`);
    const curLen = rows[0]!.length;
    const candidates: { score: number; token: number; beam: number }[] = [];
    for (let b = 0; b < k; b++) {
      const s = logSoftmax(logits[b]!);
      if (o.eosId < s.length && curLen < o.minLength) s[o.eosId] = -Infinity;
      if (o.repetitionPenalty !== 1) {
        for (const v of new Set(rows[b])) {
          if (v < s.length) s[v] = s[v]! < 0 ? s[v]! * o.repetitionPenalty : s[v]! / o.repetitionPenalty;
        }
      }
      // Only the 2k best of each row can be among the 2k best overall.
      const top: { score: number; token: number }[] = [];
      for (let v = 0; v < s.length; v++) {
        const score = beamScores[b]! + s[v]!;
        if (top.length < 2 * k || score > top[top.length - 1]!.score) {
          let at = top.length;
          while (at > 0 && top[at - 1]!.score < score) at--;
          top.splice(at, 0, { score, token: v });
          if (top.length > 2 * k) top.pop();
        }
      }
      for (const t of top) candidates.push({ ...t, beam: b });
    }
    // torch.topk over the flattened [k·V] scores: by score, ties by flat index.
    candidates.sort((a, b) => b.score - a.score || (a.beam - b.beam) || (a.token - b.token));
    const chosen = candidates.slice(0, 2 * k);
    const nextRows: number[][] = [];
    const nextScores: number[] = [];
    const nextParents: number[] = [];
    for (let rank = 0; rank < chosen.length && nextRows.length < k; rank++) {
      const c = chosen[rank]!;
      if (c.token === o.eosId) {
        if (rank >= k) continue;
        offer(rows[c.beam]!, c.score, true);
      } else {
        nextRows.push([...rows[c.beam]!, c.token]);
        nextScores.push(c.score);
        nextParents.push(c.beam);
      }
    }
    if (nextRows.length < k) throw new P2pzError('E_MODEL_INVALID', 'The captioner\'s vocabulary is too small for the beam search.');
    const best = Math.max(...chosen.map((c) => c.score));
    const allDone = hyps.length >= k && worst >= norm(best, curLen);
    rows = nextRows;
    beamScores = nextScores;
    parents = nextParents;
    done = allDone || rows[0]!.length >= o.maxLength;
    if (done && !allDone) for (let b = 0; b < k; b++) offer(rows[b]!, beamScores[b]!, false);
  }
  let best = hyps[0]!;
  for (const h of hyps) if (h.score > best.score) best = h;
  return { sequence: best.tokens, score: best.score, finished: best.finished };
}
