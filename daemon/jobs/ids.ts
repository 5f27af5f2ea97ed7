// Server-generated ids for uploads, results and jobs: 128 random bits as base64url (22 characters),
// inside the protocol's `Id` alphabet. A store checks an id against this exact shape before the id
// may name anything on disk (docs/SECURITY.md R20).
import { randomBytes } from 'node:crypto';

/** 16 bytes in base64url: 21 free characters, then one that carries only the last 2 bits. */
export const SERVER_ID_PATTERN = /^[A-Za-z0-9_-]{21}[AQgw]$/;

export function newId(): string {
  return randomBytes(16).toString('base64url');
}

export function isServerId(value: unknown): value is string {
  return typeof value === 'string' && SERVER_ID_PATTERN.test(value);
}
