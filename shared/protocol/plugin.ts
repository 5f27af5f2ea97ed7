// Messages between the Figma sandbox (plugin/figma) and the plugin UI iframe (plugin/ui). Figma wraps
// them as `{pluginMessage: ...}`; only plain data and Uint8Array cross.
import { z } from 'zod';
import { Version } from './version.js';

// ---- sandbox → UI ----
export const StoredTokenMessage = z.object({ v: Version, type: z.literal('stored-token'), token: z.string().max(200).nullable() });
export const SandboxMessage = z.discriminatedUnion('type', [StoredTokenMessage]);
export type SandboxMessage = z.infer<typeof SandboxMessage>;

// ---- UI → sandbox ----
export const SaveTokenMessage = z.object({ v: Version, type: z.literal('save-token'), token: z.string().max(200).nullable() });
export const NotifyMessage = z.object({ v: Version, type: z.literal('notify'), text: z.string().max(99), error: z.boolean().default(false) });
export const UiMessage = z.discriminatedUnion('type', [SaveTokenMessage, NotifyMessage]);
export type UiMessage = z.infer<typeof UiMessage>;
