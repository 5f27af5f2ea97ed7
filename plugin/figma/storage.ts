/// <reference path="../../node_modules/@figma/plugin-typings/plugin-api.d.ts" />
// What the plugin keeps per user in figma.clientStorage: the daemon token (so pairing happens once)
// and the daemon endpoint chosen in the panel (a team endpoint; absent: the local daemon). Stored
// values are checked on the way out. (The local port is not stored: manifest.json lets the plugin
// reach only the daemon's default port, and the studio's host once added there; docs/TEAM.md.)
import { DaemonEndpoint } from '../../shared/protocol/plugin.js';

export const STORAGE_KEYS = Object.freeze({ token: 'p2pz.token', endpoint: 'p2pz.endpoint' });

export async function loadToken(api: PluginAPI): Promise<string | null> {
  const value: unknown = await api.clientStorage.getAsync(STORAGE_KEYS.token);
  return typeof value === 'string' && value.length > 0 && value.length <= 200 ? value : null;
}

export async function saveToken(api: PluginAPI, token: string | null): Promise<void> {
  if (token === null) await api.clientStorage.deleteAsync(STORAGE_KEYS.token);
  else await api.clientStorage.setAsync(STORAGE_KEYS.token, token);
}

export async function loadEndpoint(api: PluginAPI): Promise<string | null> {
  const parsed = DaemonEndpoint.safeParse(await api.clientStorage.getAsync(STORAGE_KEYS.endpoint));
  return parsed.success ? parsed.data : null;
}

export async function saveEndpoint(api: PluginAPI, endpoint: string | null): Promise<void> {
  if (endpoint === null) await api.clientStorage.deleteAsync(STORAGE_KEYS.endpoint);
  else await api.clientStorage.setAsync(STORAGE_KEYS.endpoint, endpoint);
}
