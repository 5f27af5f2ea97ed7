#!/usr/bin/env node
// The `p2pz` command: runs the built CLI (npm install builds it through the `prepare` script).
import { existsSync } from 'node:fs';
const cli = new URL('../dist/daemon/cli.js', import.meta.url);
if (!existsSync(cli)) {
  console.error('p2pz is not built yet. Run: npm run build');
  process.exit(1);
}
await import(cli.href);
