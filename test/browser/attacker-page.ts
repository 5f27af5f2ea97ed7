// An attacking web page served on another localhost port: its sandboxed iframe has the origin `null`,
// the very origin of Figma's plugin iframe, from the same address, and runs the given script. The
// script posts its counters to the page with `parent.postMessage(stats, '*')`; the page keeps the
// latest in `window.stats`, which a test reads with page.waitForFunction.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface AttackerPage {
  readonly url: string;
  close(): Promise<void>;
}

/** Serves the page; `initialStats` is what `window.stats` holds before the first message. */
export async function serveAttackerPage(script: string, initialStats: Readonly<Record<string, number>>): Promise<AttackerPage> {
  const srcdoc = `<script>${script}</script>`.replace(/"/g, '&quot;');
  const html = `<!doctype html><meta charset="utf-8"><title>attacker</title>
<iframe sandbox="allow-scripts" srcdoc="${srcdoc}"></iframe>
<script>window.stats = ${JSON.stringify(initialStats)}; addEventListener('message', (e) => { window.stats = e.data; });</script>`;
  const server = createServer((_req, res) => res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(html));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
