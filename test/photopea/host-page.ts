// The Photopea emulation's host page and its script (photopea-emulator.ts, bundled here by esbuild),
// served to Chromium at http://localhost:<daemon port>/p2pz-test/… by intercepting those requests in the
// browser context: the daemon itself never serves them. That origin is one the daemon accepts (a
// loopback name on its own port: origin.ts, routes/pages.ts, plugin/photopea/parent-origin.ts), and
// still another origin than the page it frames (http://127.0.0.1:<port>/photopea), as Photopea is.
// A page that came from no network address counts as public to Chromium's Local Network Access
// checks, so the host origin is granted `local-network-access`, as a designer allows it for
// www.photopea.com when Chrome asks (docs/PHOTOPEA.md §3).
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { BrowserContext, Route } from 'playwright-core';

const HOST_HTML = `<!doctype html><html><head><meta charset="utf-8"><title>Photopea host (test)</title>
<style>body{margin:0;padding:16px;background:#2b2b2b}iframe{border:0;width:320px;height:720px;background:#474747}</style>
</head><body><script src="/p2pz-test/host.js"></script></body></html>`;

export interface PhotopeaHostPage {
  readonly url: string;
  readonly origin: string;
  close(): Promise<void>;
}

export async function servePhotopeaHost(context: BrowserContext, daemonPort: number): Promise<PhotopeaHostPage> {
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
  const origin = `http://localhost:${daemonPort}`;
  const pattern = `${origin}/p2pz-test/**`;
  const handler = (route: Route): Promise<void> => {
    const path = new URL(route.request().url()).pathname;
    if (path === '/p2pz-test/host.html') return route.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: HOST_HTML });
    if (path === '/p2pz-test/host.js') return route.fulfill({ status: 200, contentType: 'text/javascript; charset=utf-8', body: script });
    return route.fulfill({ status: 404, body: '' });
  };
  await context.route(pattern, handler);
  await context.grantPermissions(['local-network-access'], { origin });
  return { url: `${origin}/p2pz-test/host.html`, origin, close: () => context.unroute(pattern, handler) };
}
