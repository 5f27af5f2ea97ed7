/// <reference path="../../node_modules/@figma/plugin-typings/plugin-api.d.ts" />
// The edit a result layer was made with: its name, the record kept in its plugin data, and the
// "Re-run edit" relaunch button that brings the record back into the plugin.
import { LayerEdit } from '../../shared/protocol/plugin.js';

export const LAYER_EDIT_DEFAULTS = Object.freeze({
  /** Plugin-data key of the JSON edit record. */
  dataKey: 'p2pz.edit',
  /** The relaunch command (manifest.json `relaunchButtons`). */
  relaunchCommand: 'rerun',
});

/** "cat → dog (seed 42)"; previews say so: "cat → dog (preview, seed 42)". */
export function resultName(edit: Pick<LayerEdit, 'source' | 'target' | 'seed' | 'kind'>): string {
  const what = edit.kind === 'preview' ? `preview, seed ${edit.seed}` : `seed ${edit.seed}`;
  return `${edit.source} → ${edit.target} (${what})`;
}

export function writeLayerEdit(node: SceneNode, edit: LayerEdit): void {
  node.setPluginData(LAYER_EDIT_DEFAULTS.dataKey, JSON.stringify(LayerEdit.parse(edit)));
  // The text under the button in the properties panel.
  node.setRelaunchData({ [LAYER_EDIT_DEFAULTS.relaunchCommand]: `${edit.source} → ${edit.target}, seed ${edit.seed}` });
}

/** The edit record of a result layer; null for other layers or a damaged record. */
export function readLayerEdit(node: BaseNode): LayerEdit | null {
  // Figma returns '' for a missing key (some stubs return undefined).
  const text: string | undefined = node.getPluginData(LAYER_EDIT_DEFAULTS.dataKey);
  if (!text) return null;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return null;
  }
  const parsed = LayerEdit.safeParse(json);
  return parsed.success ? parsed.data : null;
}
