// Builds every artifact with esbuild:
//   dist/daemon/cli.js, dist/daemon/worker.js  (Node ESM; node_modules stay external: sharp and
//                                               onnxruntime-node are native)
//   dist/plugin/code.js                         (Figma sandbox: one ES2017 script, no imports)
//   dist/plugin/ui.html                         (the plugin iframe: one self-contained HTML file)
//   dist/plugin/photopea.html, web.html         (the Photopea plugin page and the standalone page,
//                                               served by the daemon; both embed the same panel)
import { build } from 'esbuild';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist');
const quiet = { logLevel: 'warning' };

async function buildDaemon() {
  await build({
    ...quiet,
    entryPoints: {
      cli: join(root, 'daemon/cli.ts'),
      worker: join(root, 'daemon/worker/worker-main.ts'),
    },
    outdir: join(out, 'daemon'),
    bundle: true,
    // Commands load on demand (daemon/cli/commands.ts): each becomes its own chunk, so `p2pz serve`
    // never loads onnxruntime-node or sharp into the daemon process.
    splitting: true,
    // Chunks sit beside cli.js and worker.js: code that finds worker.js next to itself still does.
    chunkNames: '[name]-[hash]',
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    sourcemap: 'linked',
    define: { P2PZ_VERSION: JSON.stringify(await packageVersion()) },
  });
}

async function buildPlugin() {
  await build({
    ...quiet,
    entryPoints: [join(root, 'plugin/figma/code.ts')],
    outfile: join(out, 'plugin/code.js'),
    bundle: true,
    format: 'iife',
    minify: true,
    // Figma's sandbox runs a restricted JS engine: keep syntax conservative.
    target: 'es2017',
    // The sandbox imports only shared/protocol/plugin.ts (written with zod/mini) and version.ts, whose
    // one schema is a literal: zod/mini serves both; the full zod API would add ~450 KB.
    plugins: [zodAsMini],
  });
  await buildPage(join(root, 'plugin/ui/main.ts'), join(root, 'plugin/ui/ui.html'), join(out, 'plugin/ui.html'));
}

/** The pages the daemon serves: Photopea's panel is the plugin panel itself; the standalone page puts
 *  the same panel markup (ui.html's <main>) beside its image stage. */
async function buildServedPages() {
  const panel = join(root, 'plugin/ui/ui.html');
  await Promise.all([
    buildPage(join(root, 'plugin/photopea/main.ts'), panel, join(out, 'plugin/photopea.html')),
    buildPage(join(root, 'plugin/web/main.ts'), join(root, 'plugin/web/web.html'), join(out, 'plugin/web.html'), panel),
  ]);
}

/** For the sandbox: the bare `zod` import (version.ts) resolves to a zod/mini stand-in; see the shim. */
const zodAsMini = {
  name: 'zod-as-mini',
  setup(b) {
    b.onResolve({ filter: /^zod$/ }, () => ({ path: join(root, 'plugin/figma/zod-version-shim.ts') }));
  },
};

/** Bundles one page script and its CSS and inlines both into the HTML template (Figma loads ui.html as a
 *  string). With `panelTemplate`, the template's <!--PANEL--> becomes that file's <main id="app"> element. */
export async function buildPage(entry, template, outfile, panelTemplate) {
  const result = await build({
    ...quiet,
    entryPoints: [entry],
    bundle: true,
    format: 'iife',
    target: 'es2020',
    minify: true,
    write: false,
    outdir: join(out, 'tmp'),
    loader: { '.css': 'css' },
  });
  const js = result.outputFiles.find((f) => f.path.endsWith('.js'))?.text ?? '';
  const css = result.outputFiles.find((f) => f.path.endsWith('.css'))?.text ?? '';
  let page = await readFile(template, 'utf8');
  if (panelTemplate !== undefined) {
    const main = /<main id="app">[\s\S]*<\/main>/.exec(await readFile(panelTemplate, 'utf8'))?.[0];
    if (main === undefined) throw new Error(`${panelTemplate} has no <main id="app">`);
    page = page.replace('<!--PANEL-->', () => main);
  }
  const html = page
    .replace('<!--STYLE-->', () => `<style>${css}</style>`)
    .replace('<!--SCRIPT-->', () => `<script>${js.replace(/<\/script/gi, '<\\/script')}</script>`);
  await mkdir(dirname(outfile), { recursive: true });
  await writeFile(outfile, html);
}

async function packageVersion() {
  return JSON.parse(await readFile(join(root, 'package.json'), 'utf8')).version;
}

await Promise.all([buildDaemon(), buildPlugin(), buildServedPages()]);
