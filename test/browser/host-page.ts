// Serves the Figma emulation on 127.0.0.1: a host page, its script (figma-host.ts with the
// figma-api-stub shim, bundled here by esbuild for the browser), and the built plugin files
// (dist/plugin/code.js, dist/plugin/ui.html) exactly as Figma would load them.
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('../../', import.meta.url));

const HOST_HTML = `<!doctype html><html><head><meta charset="utf-8"><title>Figma host (test)</title>
<style>body{margin:0;padding:16px;background:#e5e5e5;font:12px system-ui}iframe{border:0;border-radius:13px;box-shadow:0 2px 14px rgba(0,0,0,.15);background:#fff}</style>
</head><body><script src="/host.js"></script></body></html>`;

export interface HostPage {
  readonly url: string;
  close(): Promise<void>;
}

async function hostScript(): Promise<string> {
  const result = await build({
    entryPoints: [fileURLToPath(new URL('./figma-host.ts', import.meta.url))],
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'browser',
    target: 'es2020',
    // figma-api-stub assigns to Node's `global`.
    define: { global: 'globalThis' },
    logLevel: 'error',
  });
  const [file] = result.outputFiles;
  if (file === undefined) throw new Error('esbuild produced no host script');
  return file.text;
}

export async function serveHostPage(): Promise<HostPage> {
  const files: Record<string, { type: string; body: string | Buffer }> = {
    '/host.html': { type: 'text/html; charset=utf-8', body: HOST_HTML },
    '/host.js': { type: 'text/javascript; charset=utf-8', body: await hostScript() },
    '/code.js': { type: 'text/javascript; charset=utf-8', body: await readFile(`${root}dist/plugin/code.js`) },
    '/ui.html': { type: 'text/html; charset=utf-8', body: await readFile(`${root}dist/plugin/ui.html`) },
  };
  const server: Server = createServer((req, res) => {
    const file = files[(req.url ?? '').split('?')[0] ?? ''];
    if (file === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': file.type, 'Cache-Control': 'no-store' }).end(file.body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/host.html`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
