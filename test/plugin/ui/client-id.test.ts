// The panel's client id survives a reload of the tab (sessionStorage), so the daemon does not take
// the reloaded page for a closed one and cancel its render; other prefixes and tabs get their own.
import { describe, expect, it } from 'vitest';
import { panelClientId } from '../../../plugin/ui/client-id.js';

function memoryStorage(): Pick<Storage, 'getItem' | 'setItem'> {
  const m = new Map<string, string>();
  return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => void m.set(k, v) };
}

describe('panelClientId', () => {
  it('is the same after a reload of the tab, different in another tab and for another host', () => {
    const tab = memoryStorage();
    const first = panelClientId('web', () => tab);
    expect(first).toMatch(/^web_[A-Za-z0-9]{12}$/);
    expect(panelClientId('web', () => tab)).toBe(first);
    expect(panelClientId('photopea', () => tab)).not.toBe(first);
    expect(panelClientId('web', () => memoryStorage())).not.toBe(first);
  });

  it('without sessionStorage (an opaque-origin iframe throws) each load gets a fresh id', () => {
    const throwing = () => {
      throw new DOMException('The document is sandboxed', 'SecurityError');
    };
    const a = panelClientId('figma', throwing);
    expect(a).toMatch(/^figma_[A-Za-z0-9]{12}$/);
    expect(panelClientId('figma', throwing)).not.toBe(a);
  });
});
