// `npm run bench <name> [args]`: runs scripts/bench/<name>.mjs (or .ts through esbuild's register).
// Each benchmark prints a Markdown table for docs/BENCHMARKS.md with the machine and the command.
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const dir = join(dirname(fileURLToPath(import.meta.url)), 'bench');
const [name, ...args] = process.argv.slice(2);
const available = readdirSync(dir).filter((f) => f.endsWith('.mjs')).map((f) => f.replace(/\.mjs$/, ''));
if (!name || !available.includes(name)) {
  console.error(`usage: npm run bench <${available.join('|')}> [args]`);
  process.exit(2);
}
const file = join(dir, `${name}.mjs`);
if (!existsSync(file)) process.exit(2);
process.argv = [process.argv[0], file, ...args];
await import(pathToFileURL(file).href);
