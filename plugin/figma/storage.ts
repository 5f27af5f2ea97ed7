/// <reference path="../../node_modules/@figma/plugin-typings/plugin-api.d.ts" />
// What the plugin keeps per user in figma.clientStorage: the daemon token (so pairing happens once)
// and, for a daemon started with `--port N`, its port. Stored values are checked on the way out.
import { DEFAULT_PORT } from '../../shared/protocol/version.js';

export const STORAGE_KEYS = Object.freeze({ token: 'p2pz.token', port: 'p2pz.port' });

export async function loadToken(api: PluginAPI): Promise<string | null> {
  const value: unknown = await api.clientStorage.getAsync(STORAGE_KEYS.token);
  return typeof value === 'string' && value.length > 0 && value.length <= 200 ? value : null;
}

export async function saveToken(api: PluginAPI, token: string | null): Promise<void> {
  if (token === null) await api.clientStorage.deleteAsync(STORAGE_KEYS.token);
  else await api.clientStorage.setAsync(STORAGE_KEYS.token, token);
}

export async function loadPort(api: PluginAPI): Promise<number> {
  const value: unknown = await api.clientStorage.getAsync(STORAGE_KEYS.port);
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 65535 ? value : DEFAULT_PORT;
}
