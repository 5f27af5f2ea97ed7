// The protocol version. Every HTTP body, WebSocket message and worker IPC message carries it as `v`;
// a peer that speaks another version gets E_PROTOCOL_VERSION and keeps its connection.
import { z } from 'zod';

export const PROTOCOL_VERSION = 1 as const;
export const Version = z.literal(PROTOCOL_VERSION);

/** Default daemon port (documented in README): 7860 is taken by common SD UIs, so p2pz uses 7870. */
export const DEFAULT_PORT = 7870;

/** Photopea's origin, admitted by the daemon's origin allowlist next to `null` (Figma's iframe). */
export const PHOTOPEA_ORIGIN = 'https://www.photopea.com';
