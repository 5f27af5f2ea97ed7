/// <reference path="../../node_modules/@figma/plugin-typings/plugin-api.d.ts" />
// The sandbox side of the plugin: how it starts (menu command, quick action with source and target
// words, or the "Re-run edit" relaunch button), what it tells the UI (the stored token, the selection),
// and the UI's requests it carries out (read layer pixels, place results, store the token, notify).
// Every message from the UI is parsed by its schema; anything else is dropped.
import {
  Direction,
  PLUGIN_LIMITS,
  UiMessage,
  type ImageBytes,
  type LayerEdit,
  type SandboxMessage,
} from '../../shared/protocol/plugin.js';
import { DEFAULT_PORT, PROTOCOL_VERSION } from '../../shared/protocol/version.js';
import { readLayerEdit } from './layer-edit.js';
import { placeResult } from './place.js';
import { describeSelection, readLayerImage } from './selection.js';
import { loadEndpoint, loadToken, saveEndpoint, saveToken } from './storage.js';
import { daemonDirections, suggestWords, type SandboxFetch } from './suggestions.js';

export const SANDBOX_DEFAULTS = Object.freeze({
  ui: { width: 340, height: 620, themeColors: true, title: 'p2pz' },
});

export interface SandboxDeps {
  readonly api: PluginAPI;
  /** The UI's HTML (`__html__`). */
  readonly html: string;
  /** Figma's sandbox fetch, for quick-action suggestions; absent in environments without it. */
  readonly fetch?: SandboxFetch;
}

/** A toast text within Figma's length. */
export function notifyText(text: string): string {
  const max = PLUGIN_LIMITS.maxNotifyChars;
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

function isSceneNode(node: BaseNode | null): node is SceneNode {
  return node !== null && node.type !== 'DOCUMENT' && node.type !== 'PAGE';
}

/** Registers the run and quick-action handlers; Figma then fires `run` once. */
export function startSandbox(deps: SandboxDeps): void {
  const { api } = deps;
  let directions: Promise<Direction[]> | undefined;

  api.parameters.on('input', ({ key, query, parameters, result }: ParameterInputEvent) => {
    if (key !== 'source' && key !== 'target') return;
    directions ??= daemonDirections(deps.fetch, DEFAULT_PORT);
    const chosen: unknown = parameters['source'];
    void directions.then((known) => result.setSuggestions(suggestWords(key, query, typeof chosen === 'string' ? chosen : undefined, known)));
  });

  api.on('run', (event: RunEvent) => {
    void run(deps, event).catch((err: unknown) => {
      api.notify(notifyText(err instanceof Error ? err.message : 'p2pz could not start.'), { error: true });
    });
  });
}

async function run(deps: SandboxDeps, event: RunEvent): Promise<void> {
  const { api } = deps;
  const post = (message: SandboxMessage): void => api.ui.postMessage(message);
  const command = event.command === 'edit' || event.command === 'rerun' ? event.command : 'open';

  let direction: Direction | null = null;
  let edit: LayerEdit | null = null;
  if (command === 'edit') {
    const parsed = Direction.safeParse(event.parameters ?? {});
    direction = parsed.success ? parsed.data : null;
  } else if (command === 'rerun') {
    edit = await rerunEdit(api);
  }

  api.showUI(deps.html, SANDBOX_DEFAULTS.ui);
  const postSelection = (): void => {
    const { items, problem } = describeSelection(api.currentPage.selection);
    post({ v: PROTOCOL_VERSION, type: 'selection', items, problem });
  };

  api.ui.onmessage = (raw: unknown) => {
    const parsed = UiMessage.safeParse(raw);
    if (!parsed.success) return; // not ours: the UI only sends schema-valid messages
    void handle(api, parsed.data, post).catch((err: unknown) => {
      api.notify(notifyText(err instanceof Error ? err.message : 'Something went wrong.'), { error: true });
    });
  };
  api.on('selectionchange', postSelection);
  // With dynamic page loading, switching pages changes the selection without a selectionchange.
  api.on('currentpagechange', postSelection);

  post({
    v: PROTOCOL_VERSION,
    type: 'init',
    token: await loadToken(api),
    // The only port manifest.json's networkAccess allows.
    port: DEFAULT_PORT,
    // A team endpoint chosen in the panel (reachable once manifest.json names its host).
    endpoint: await loadEndpoint(api),
    command,
    direction,
    edit,
    autoPreview: direction !== null || edit !== null,
  });
  postSelection();
}

/** The edit stored on the selected result layer; its original layer is selected again when it still
 *  exists, so that the re-run edits the original. */
async function rerunEdit(api: PluginAPI): Promise<LayerEdit | null> {
  const [node] = api.currentPage.selection;
  if (node === undefined) return null;
  const edit = readLayerEdit(node);
  if (edit === null) return null;
  const original = await api.getNodeByIdAsync(edit.originalId);
  if (isSceneNode(original) && !original.removed) api.currentPage.selection = [original];
  else api.notify('The original layer is gone: editing this result instead.');
  return edit;
}

async function sceneNode(api: PluginAPI, id: string): Promise<SceneNode> {
  const node = await api.getNodeByIdAsync(id);
  if (!isSceneNode(node) || node.removed) throw new Error('A selected layer was deleted. Select it again.');
  return node;
}

async function handle(api: PluginAPI, message: UiMessage, post: (m: SandboxMessage) => void): Promise<void> {
  switch (message.type) {
    case 'save-token':
      await saveToken(api, message.token);
      return;
    case 'save-endpoint':
      await saveEndpoint(api, message.endpoint);
      return;
    case 'notify':
      api.notify(message.text, { error: message.error });
      return;
    case 'resize':
      api.ui.resize(message.width, message.height);
      return;
    case 'read-images': {
      try {
        const images: ImageBytes[] = [];
        for (const id of message.nodeIds) images.push(await readLayerImage(api, await sceneNode(api, id)));
        post({ v: PROTOCOL_VERSION, type: 'images', requestId: message.requestId, images });
      } catch (err) {
        post({ v: PROTOCOL_VERSION, type: 'sandbox-error', requestId: message.requestId, message: errorText(err, 'The layer could not be read.') });
      }
      return;
    }
    case 'place-results': {
      try {
        const nodeIds: string[] = [];
        for (const item of message.items) {
          const original = await sceneNode(api, item.nodeId);
          nodeIds.push(placeResult(api, original, item, message.maskMode).root.id);
        }
        post({ v: PROTOCOL_VERSION, type: 'placed', requestId: message.requestId, nodeIds });
        const first = message.items[0];
        const text = nodeIds.length === 1 && first !== undefined ? `Placed ${first.edit.source} → ${first.edit.target}` : `Placed ${nodeIds.length} results`;
        api.notify(notifyText(text));
      } catch (err) {
        post({ v: PROTOCOL_VERSION, type: 'sandbox-error', requestId: message.requestId, message: errorText(err, 'The result could not be placed.') });
      }
      return;
    }
  }
}

function errorText(err: unknown, fallback: string): string {
  const text = err instanceof Error && err.message ? err.message : fallback;
  return text.slice(0, 500);
}
