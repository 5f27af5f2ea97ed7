// `npm run bench <name> [args]`: bundles scripts/bench/<name>.ts with esbuild (so benchmarks import the
// project's TypeScript sources directly) and runs it. Each benchmark prints a Markdown section for
// docs/BENCHMARKS.md naming the machine and the command.
import { build } from 'esbuild';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, 'scripts/bench');
const [name, ...args] = process.argv.slice(2);
const files = readdirSync(dir).filter((f) => /\.(ts|mjs)$/.test(f) && f !== 'machine.ts');
const available = files.map((f) => f.replace(/\.(ts|mjs)$/, ''));
if (!name || !available.includes(name)) {
  console.error(`usage: npm run bench <${available.join('|')}> [args]`);
  process.exit(2);
}
const source = join(dir, files[available.indexOf(name)]);
const outfile = join(root, 'dist/bench', `${name}.mjs`);
await build({
  entryPoints: [source],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  logLevel: 'warning',
});
process.argv = [process.argv[0], outfile, ...args];
await import(pathToFileURL(outfile).href);
