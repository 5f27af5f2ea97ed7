// manifest.json agrees with the code: the commands the sandbox handles, the quick-action parameter
// keys it suggests for, the relaunch command it writes, and the daemon address the UI uses.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { LAYER_EDIT_DEFAULTS } from '../../plugin/figma/layer-edit.js';
import { DEFAULT_PORT } from '../../shared/protocol/version.js';

interface Manifest {
  name: string;
  api: string;
  main: string;
  ui: string;
  editorType: string[];
  documentAccess: string;
  networkAccess: { allowedDomains: string[]; reasoning?: string };
  menu: { name: string; command: string; parameters?: { key: string; allowFreeform?: boolean }[] }[];
  relaunchButtons: { command: string; name: string }[];
}

const manifest = JSON.parse(readFileSync(new URL('../../manifest.json', import.meta.url), 'utf8')) as Manifest;

describe('manifest.json', () => {
  it('loads the built files in Figma Design with dynamic page access', () => {
    expect(manifest).toMatchObject({ name: 'p2pz', api: '1.0.0', main: 'dist/plugin/code.js', ui: 'dist/plugin/ui.html', editorType: ['figma'], documentAccess: 'dynamic-page' });
  });

  it('allows exactly the local daemon, with the reasoning Figma asks for', () => {
    expect(manifest.networkAccess.allowedDomains).toEqual([`http://localhost:${DEFAULT_PORT}`, `ws://localhost:${DEFAULT_PORT}`]);
    expect(manifest.networkAccess.reasoning?.length ?? 0).toBeGreaterThan(40);
  });

  it('has the menu commands the sandbox handles, with free-form source and target parameters', () => {
    expect(manifest.menu.map((m) => m.command)).toEqual(['open', 'edit']);
    const edit = manifest.menu.find((m) => m.command === 'edit');
    expect(edit?.parameters?.map((p) => [p.key, p.allowFreeform])).toEqual([
      ['source', true],
      ['target', true],
    ]);
  });

  it('has the "Re-run edit" relaunch button for the command result layers carry', () => {
    expect(manifest.relaunchButtons).toEqual([{ command: LAYER_EDIT_DEFAULTS.relaunchCommand, name: 'Re-run edit' }]);
  });
});
