// The sandbox controller: how the plugin starts (menu, quick action, relaunch), what it tells the UI,
// and the UI requests it carries out. Messages that do not parse are dropped.
import { describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION, DEFAULT_PORT } from '../../../shared/protocol/version.js';
import type { LayerEdit, SandboxMessage } from '../../../shared/protocol/plugin.js';
import { writeLayerEdit } from '../../../plugin/figma/layer-edit.js';
import { notifyText, startSandbox } from '../../../plugin/figma/sandbox.js';
import type { SandboxFetch } from '../../../plugin/figma/suggestions.js';
import { createFigmaShim, type FigmaShim } from '../../browser/figma-shim.js';
import { png } from './fixtures.js';

const v = PROTOCOL_VERSION;
const EDIT: LayerEdit = { source: 'horse', target: 'zebra', seed: 7, steps: 20, cfg: 4, xa: 0.2, size: 384, editScale: 1, kind: 'render', engine: 'diffusion', originalId: '0:0' };

/** Resolves once the sandbox has posted `count` messages to the UI. */
async function messages(shim: FigmaShim, count: number): Promise<SandboxMessage[]> {
  for (let i = 0; i < 200 && shim.toUi.length < count; i++) await new Promise((r) => setTimeout(r, 2));
  return shim.toUi as SandboxMessage[];
}

async function started(command = 'open', parameters?: Record<string, string>, fetch?: SandboxFetch) {
  const shim = createFigmaShim();
  const hash = shim.addImage(await png(20, 10));
  const photo = shim.rectangle({ name: 'Photo', x: 0, y: 0, width: 200, height: 100, fills: [{ type: 'IMAGE', scaleMode: 'FILL', imageHash: hash }] });
  shim.select([photo]);
  startSandbox({ api: shim.figma, html: '<html></html>', ...(fetch ? { fetch } : {}) });
  return { shim, photo, start: () => shim.run(command, parameters) };
}

describe('startSandbox', () => {
  it('opens the UI themed and sends init with the stored token, then the selection', async () => {
    const { shim, photo, start } = await started();
    shim.storage.set('p2pz.token', 'tok-123');
    start();
    const [init, selection] = await messages(shim, 2);
    expect(shim.shownUi).toMatchObject({ themeColors: true, title: 'p2pz' });
    expect(init).toEqual({ v, type: 'init', token: 'tok-123', port: DEFAULT_PORT, endpoint: null, command: 'open', direction: null, edit: null, autoPreview: false });
    expect(selection).toEqual({ v, type: 'selection', items: [{ nodeId: photo.id, name: 'Photo', width: 200, height: 100, read: 'image-fill' }], problem: null });
  });

  it('keeps only the token and the chosen endpoint in client storage: the port is always the one manifest.json allows', async () => {
    const { shim, start } = await started();
    shim.storage.set('p2pz.port', 9999); // what an earlier version read and nothing ever wrote
    const read: string[] = [];
    const getAsync = shim.figma.clientStorage.getAsync.bind(shim.figma.clientStorage);
    shim.figma.clientStorage.getAsync = (key: string) => {
      read.push(key);
      return getAsync(key);
    };
    start();
    const [init] = await messages(shim, 2);
    expect(init).toMatchObject({ type: 'init', port: DEFAULT_PORT });
    expect(read).toEqual(['p2pz.token', 'p2pz.endpoint']);
  });

  it('hands the UI the endpoint kept by save-endpoint, and forgets it on null; a malformed stored one is ignored', async () => {
    const { shim, start } = await started();
    shim.storage.set('p2pz.endpoint', 'https://p2pz.studio.example');
    start();
    const [init] = await messages(shim, 2);
    expect(init).toMatchObject({ type: 'init', endpoint: 'https://p2pz.studio.example' });
    shim.sendToSandbox({ v, type: 'save-endpoint', endpoint: 'https://other.studio.example:8443' });
    await new Promise((r) => setTimeout(r, 5));
    expect(shim.storage.get('p2pz.endpoint')).toBe('https://other.studio.example:8443');
    shim.sendToSandbox({ v, type: 'save-endpoint', endpoint: 'https://evil.example/path' });
    await new Promise((r) => setTimeout(r, 5));
    expect(shim.storage.get('p2pz.endpoint')).toBe('https://other.studio.example:8443');
    shim.sendToSandbox({ v, type: 'save-endpoint', endpoint: null });
    await new Promise((r) => setTimeout(r, 5));
    expect(shim.storage.has('p2pz.endpoint')).toBe(false);

    const again = await started();
    again.shim.storage.set('p2pz.endpoint', 'https://a.example/with/path');
    again.start();
    const [init2] = await messages(again.shim, 2);
    expect(init2).toMatchObject({ type: 'init', endpoint: null });
  });

  it('posts the selection again when it changes', async () => {
    const { shim, start } = await started();
    start();
    await messages(shim, 2);
    shim.select([]);
    const all = await messages(shim, 3);
    expect(all[2]).toEqual({ v, type: 'selection', items: [], problem: 'Select an image layer (or any layer) to edit.' });
  });

  it('starts a quick action with its words and a preview', async () => {
    const { shim, start } = await started('edit', { source: 'cat', target: 'dog' });
    start();
    const [init] = await messages(shim, 1);
    expect(init).toMatchObject({ type: 'init', command: 'edit', direction: { source: 'cat', target: 'dog' }, autoPreview: true });
  });

  it('re-runs a result: the stored edit comes back and the original is selected again', async () => {
    const { shim, photo, start } = await started('rerun');
    const result = shim.rectangle({ name: 'horse → zebra (seed 7)', x: 0, y: 0, width: 200, height: 100 });
    writeLayerEdit(result, { ...EDIT, originalId: photo.id });
    shim.select([result]);
    start();
    const [init, selection] = await messages(shim, 2);
    expect(init).toMatchObject({ type: 'init', command: 'rerun', edit: { ...EDIT, originalId: photo.id }, autoPreview: true });
    expect(shim.figma.currentPage.selection).toEqual([photo]);
    expect(selection).toMatchObject({ type: 'selection', items: [{ nodeId: photo.id }] });
  });

  it('stores and forgets the token', async () => {
    const { shim, start } = await started();
    start();
    await messages(shim, 2);
    shim.sendToSandbox({ v, type: 'save-token', token: 'new-token' });
    await new Promise((r) => setTimeout(r, 5));
    expect(shim.storage.get('p2pz.token')).toBe('new-token');
    shim.sendToSandbox({ v, type: 'save-token', token: null });
    await new Promise((r) => setTimeout(r, 5));
    expect(shim.storage.has('p2pz.token')).toBe(false);
  });

  it('drops messages that are not ours or not valid', async () => {
    const { shim, start } = await started();
    start();
    await messages(shim, 2);
    shim.sendToSandbox({ v, type: 'save-token', token: 'x'.repeat(201) });
    shim.sendToSandbox({ v: 2, type: 'save-token', token: 'other-version' });
    shim.sendToSandbox({ type: 'notify', text: 'no version' });
    shim.sendToSandbox('save-token');
    shim.sendToSandbox({ v, type: 'notify', text: 'x'.repeat(100) });
    await new Promise((r) => setTimeout(r, 5));
    expect(shim.storage.has('p2pz.token')).toBe(false);
    expect(shim.notifications).toEqual([]);
    expect(shim.toUi).toHaveLength(2);
  });

  it('reads the pixels the UI asks for and places the results it sends back', async () => {
    const { shim, photo, start } = await started();
    start();
    await messages(shim, 2);
    shim.sendToSandbox({ v, type: 'read-images', requestId: 5, nodeIds: [photo.id] });
    const images = (await messages(shim, 3))[2];
    expect(images).toMatchObject({ type: 'images', requestId: 5, images: [{ nodeId: photo.id, mime: 'image/png', read: 'image-fill' }] });
    const result = await png(20, 10, [0, 255, 0]);
    shim.sendToSandbox({
      v,
      type: 'place-results',
      requestId: 6,
      maskMode: 'none',
      items: [{ nodeId: photo.id, read: 'image-fill', image: { width: 20, height: 10, tiles: [{ x: 0, y: 0, width: 20, height: 10, bytes: result }] }, mask: null, edit: { ...EDIT, originalId: photo.id } }],
    });
    const placed = (await messages(shim, 4))[3];
    const newNode = shim.figma.currentPage.children[1];
    expect(placed).toEqual({ v, type: 'placed', requestId: 6, nodeIds: [newNode?.id] });
    expect(newNode?.name).toBe('horse → zebra (seed 7)');
    expect(shim.notifications).toEqual([{ text: 'Placed horse → zebra', error: false }]);
  });

  it('answers a request for a deleted layer with an error', async () => {
    const { shim, photo, start } = await started();
    start();
    await messages(shim, 2);
    photo.remove();
    shim.sendToSandbox({ v, type: 'read-images', requestId: 9, nodeIds: [photo.id] });
    const reply = (await messages(shim, 3))[2];
    expect(reply).toEqual({ v, type: 'sandbox-error', requestId: 9, message: 'A selected layer was deleted. Select it again.' });
  });

  it('suggests the daemon’s fast directions first, then the built-in ones, and takes any word', async () => {
    const asked: string[] = [];
    const fetch: SandboxFetch = async (url) => {
      asked.push(url);
      return { ok: true, json: async () => ({ models: [{ name: 'gan1', direction: { source: 'cat', target: 'lion' } }, { name: 'sd' }] }) };
    };
    const { shim } = await started('edit', undefined, fetch);
    expect(await shim.parameterInput('source', '')).toEqual(['cat', 'dog', 'horse', 'zebra', 'sketch', 'tree']);
    expect(await shim.parameterInput('target', '', { source: 'cat' })).toEqual(['lion', 'dog', 'cat wearing glasses', 'zebra', 'horse', 'oil painting', 'tree in winter']);
    expect(await shim.parameterInput('source', 'ze')).toEqual(['ze', 'zebra']);
    expect(await shim.parameterInput('source', 'Zebra')).toEqual(['zebra']);
    expect(asked).toEqual([`http://localhost:${DEFAULT_PORT}/v1/health`]);
  });

  it('suggests the built-in directions when the daemon does not answer', async () => {
    const fetch: SandboxFetch = () => new Promise(() => undefined); // never answers
    const { shim } = await started('edit', undefined, fetch);
    expect(await shim.parameterInput('target', 'do', { source: 'cat' })).toEqual(['do', 'dog']);
  });
});

describe('notifyText', () => {
  it('keeps toasts under 100 characters', () => {
    expect(notifyText('short')).toBe('short');
    const long = notifyText('x'.repeat(300));
    expect(long).toHaveLength(99);
    expect(long.endsWith('…')).toBe(true);
  });
});
