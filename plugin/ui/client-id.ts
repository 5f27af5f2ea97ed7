// The id that names this panel's event stream (and so its jobs) at the daemon. It is kept in the
// tab's sessionStorage, which survives a reload of the page and is not shared with other tabs: the
// daemon cancels the jobs of a client whose last stream stayed closed past a short grace period
// (daemon/server/abandoned-clients.ts), so a reload that came back under a new id would lose its render.
// Where sessionStorage is unavailable (Figma's plugin iframe has an opaque origin, where it throws),
// each load gets a fresh id.
import { randomId } from './daemon-client.js';

export function panelClientId(prefix: string, storage: () => Pick<Storage, 'getItem' | 'setItem'> = () => sessionStorage): string {
  const key = `p2pz.clientId.${prefix}`;
  try {
    const store = storage();
    const kept = store.getItem(key);
    if (kept !== null && /^[A-Za-z0-9_-]{8,64}$/.test(kept)) return kept;
    const id = randomId(prefix);
    store.setItem(key, id);
    return id;
  } catch {
    return randomId(prefix);
  }
}
