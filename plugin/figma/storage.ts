/// <reference path="../../node_modules/@figma/plugin-typings/plugin-api.d.ts" />
// What the plugin keeps per user in figma.clientStorage: the daemon token (so pairing happens once).
// Stored values are checked on the way out. (The port is not stored: manifest.json lets the plugin
// reach only the daemon's default port.)

export const STORAGE_KEYS = Object.freeze({ token: 'p2pz.token' });

export async function loadToken(api: PluginAPI): Promise<string | null> {
  const value: unknown = await api.clientStorage.getAsync(STORAGE_KEYS.token);
  return typeof value === 'string' && value.length > 0 && value.length <= 200 ? value : null;
}

export async function saveToken(api: PluginAPI, token: string | null): Promise<void> {
  if (token === null) await api.clientStorage.deleteAsync(STORAGE_KEYS.token);
  else await api.clientStorage.setAsync(STORAGE_KEYS.token, token);
}
