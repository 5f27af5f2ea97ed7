// The pix2pix-zero settings as command-line flags, shared by `p2pz edit` and `p2pz distill pairs`:
// their option table, their parsing into the protocol's EditParams (so the CLI and the daemon accept
// exactly the same values), and the user's own sentence banks.
import { existsSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { devicePreference, EditParams, P2pzError } from '../../shared/protocol/index.js';
import { loadUserBank } from '../pipeline/directions/sentence-bank.js';
import type { SentenceBanks } from '../pipeline/directions/edit-direction.js';
import { intFlag } from './command.js';

export const EDIT_FLAG_OPTIONS = Object.freeze({
  model: { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string' },
  caption: { type: 'string' },
  steps: { type: 'string' },
  seed: { type: 'string' },
  xa: { type: 'string' },
  cfg: { type: 'string' },
  'reg-steps': { type: 'string' },
  size: { type: 'string' },
  'edit-scale': { type: 'string' },
  device: { type: 'string' },
  'source-bank': { type: 'string' },
  'target-bank': { type: 'string' },
} as const);

type EditFlagValues = { readonly [K in keyof typeof EDIT_FLAG_OPTIONS]?: string | undefined };

/** The model folder of `--model VALUE`: a name as `p2pz models list` shows it (a folder of the models
 *  directory, `gan/…` included), else a folder path; `fallback` (a name) when the flag is absent. */
export function modelFolder(value: string | undefined, modelsDir: string, fallback: string): string {
  if (value === undefined) return join(modelsDir, fallback);
  const installed = join(modelsDir, value);
  const looksLikeName = !isAbsolute(value) && !value.startsWith('.') && !value.includes('\\');
  if (looksLikeName && existsSync(installed)) return installed;
  if (existsSync(value) || !looksLikeName) return resolve(value);
  return installed;
}

/** A finite number from a flag value. */
export function numberFlag(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new P2pzError('E_BAD_REQUEST', `--${name} must be a number.`);
  return n;
}

/** `--size N`: the working size's long side, a multiple of 64 from 64 to 1024 (the UNet's latent is
 *  an eighth of the image, and SD 1.x's UNet halves it three times). */
export function sizeFlag(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 64 || n > 1024 || n % 64 !== 0) {
    const near = Math.min(1024, Math.max(64, Math.round((Number.isFinite(n) ? n : 512) / 64) * 64));
    throw new P2pzError('E_BAD_REQUEST', `--size must be a multiple of 64 from 64 to 1024 (the long side of the working size), such as ${near}.`);
  }
  return n;
}

/** The edit settings of the flags, validated by the protocol's schema; `extra` adds mask and blend. */
export function editParamsFromFlags(values: EditFlagValues, usageLine: string, extra: { mask?: boolean; blend?: boolean } = {}): EditParams {
  if (values.from === undefined || values.to === undefined) throw new P2pzError('E_BAD_REQUEST', 'Both --from and --to are required.', usageLine);
  if (values.device !== undefined) devicePreference(values.device);
  if ((values['source-bank'] === undefined) !== (values['target-bank'] === undefined)) {
    throw new P2pzError('E_BAD_REQUEST', '--source-bank and --target-bank go together.');
  }
  const parsed = EditParams.safeParse({
    source: values.from,
    target: values.to,
    ...(values.caption === undefined ? {} : { caption: values.caption }),
    steps: intFlag('steps', values.steps, 1, 200),
    seed: intFlag('seed', values.seed, 0, 2 ** 32 - 1),
    xa: numberFlag('xa', values.xa),
    cfg: numberFlag('cfg', values.cfg),
    regSteps: intFlag('reg-steps', values['reg-steps'], 0, 20),
    size: sizeFlag(values.size),
    editScale: numberFlag('edit-scale', values['edit-scale']),
    ...extra,
  });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new P2pzError('E_BAD_REQUEST', `${issue?.path.join('.') || 'options'}: ${issue?.message ?? 'invalid'}.`);
  }
  return parsed.data;
}

/** The user's sentence banks (`--source-bank FILE --target-bank FILE`), or undefined for the generated ones. */
export async function userBanksFromFlags(values: EditFlagValues): Promise<SentenceBanks | undefined> {
  const source = values['source-bank'];
  const target = values['target-bank'];
  if (source === undefined || target === undefined) return undefined;
  return { source: await loadUserBank(source), target: await loadUserBank(target) };
}
