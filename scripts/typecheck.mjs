// Type-checks each execution context with its own tsconfig, so DOM types cannot leak into the
// Figma sandbox or the daemon, and Node types cannot leak into the plugin.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const projects = ['shared', 'plugin/figma', 'plugin/ui', 'plugin/photopea', 'plugin/web', 'daemon', 'test', 'scripts/bench', 'scripts/device'];
const tsc = join(root, 'node_modules/typescript/bin/tsc');
let failed = 0;
for (const p of projects) {
  const r = spawnSync(process.execPath, [tsc, '-p', join(root, p, 'tsconfig.json')], { stdio: 'inherit' });
  if (r.status !== 0) {
    failed++;
    console.error(`typecheck failed: ${p}`);
  }
}
if (failed) process.exit(1);
console.log(`typecheck ok: ${projects.join(', ')}`);
