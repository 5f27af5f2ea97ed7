// Parsing of everything a client sends (docs/SECURITY.md §R10, §R12): the protocol version is checked first (a peer
// with another version gets E_PROTOCOL_VERSION, not a list of schema complaints), then the schema;
// zod's issues become one short, readable E_BAD_REQUEST detail without echoing the input.
import type { z } from 'zod';
import { P2pzError, PROTOCOL_VERSION } from '../../shared/protocol/index.js';

export const VALIDATE_DEFAULTS = Object.freeze({
  /** Issues named in an error detail; the rest are counted. */
  maxIssues: 3,
});

/** "edit.steps: Too big: expected number to be <=200; kind: Invalid option ..." */
export function describeIssues(error: z.ZodError): string {
  const shown = error.issues.slice(0, VALIDATE_DEFAULTS.maxIssues).map((issue) => {
    const path = issue.path.map(String).join('.').slice(0, 80);
    return `${path || 'body'}: ${issue.message.slice(0, 120)}`;
  });
  const more = error.issues.length - shown.length;
  return shown.join('; ') + (more > 0 ? ` (and ${more} more)` : '');
}

/** Throws E_PROTOCOL_VERSION when `value` is an object carrying a `v` other than ours. */
export function checkVersion(value: unknown): void {
  if (typeof value === 'object' && value !== null && !Array.isArray(value) && 'v' in value) {
    const v = (value as { v: unknown }).v;
    if (v !== PROTOCOL_VERSION) {
      throw new P2pzError('E_PROTOCOL_VERSION', `This daemon speaks version ${PROTOCOL_VERSION}.`);
    }
  }
}

/** Version check, then schema: the parsed value, or E_PROTOCOL_VERSION / E_BAD_REQUEST. */
export function parseBody<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  checkVersion(value);
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new P2pzError('E_BAD_REQUEST', describeIssues(parsed.error));
  return parsed.data;
}

/** JSON text → value; E_BAD_REQUEST for text that is not JSON (or not UTF-8). */
export function parseJsonText(bytes: Uint8Array): unknown {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new P2pzError('E_BAD_REQUEST', 'The body is not UTF-8 text.');
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new P2pzError('E_BAD_REQUEST', 'The body is not valid JSON.');
  }
}
