// Serves the Photopea emulation on 127.0.0.1 (a port of its own, so another origin than the daemon's
// page it frames): a host page and its script (photopea-emulator.ts, bundled here by esbuild).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const HOST_HTML = `<!doctype html><html><head><meta charset="utf-8"><title>Photopea host (test)</title>
<style>body{margin:0;padding:16px;background:#2b2b2b}iframe{border:0;width:320px;height:720px;background:#474747}</style>
</head><body><script src="/host.js"></script></body></html>`;

export interface PhotopeaHostPage {
  readonly url: string;
  readonly origin: string;
  close(): Promise<void>;
}

export async function servePhotopeaHost(): Promise<PhotopeaHostPage> {
  const result = await build({
    entryPoints: [fileURLToPath(new URL('./photopea-emulator.ts', import.meta.url))],
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'browser',
    target: 'es2020',
    logLevel: 'error',
  });
  const script = result.outputFiles[0]?.text ?? '';
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path === '/host.html') res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(HOST_HTML);
    else if (path === '/host.js') res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' }).end(script);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;
  return {
    url: `${origin}/host.html`,
    origin,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
