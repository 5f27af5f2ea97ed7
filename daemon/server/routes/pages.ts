// GET / and GET /photopea: the standalone page and the Photopea plugin page, the built single-file
// HTML pages (dist/plugin/web.html, dist/plugin/photopea.html). They are public static files, open
// without a token like health (gate.ts lists them); every API call they make still needs one, which a
// page gets by pairing with the daemon's code. Each answer carries a strict Content-Security-Policy:
// only the page's own inline script and style (by hash), images from itself, `data:` and `blob:`,
// connections only to this daemon, no forms, no plugins; the standalone page cannot be framed, the
// Photopea page only by Photopea or the daemon's own origins (a loopback name on its own port: the
// origins origin.ts accepts; a page on another port is another site).
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Request, Response, Router } from 'express';
import { P2pzError, PHOTOPEA_ORIGIN } from '../../../shared/protocol/index.js';
import type { ServiceContext } from '../context.js';
import { LOOPBACK_NAMES } from '../host.js';
import { methodNotAllowed } from './methods.js';

export const PAGES_DEFAULTS = Object.freeze({
  /** Where the built pages are looked for: beside the daemon's bundle (dist/daemon → dist/plugin),
   *  then, when the daemon runs from its sources, the build's output folder. */
  dirs: [fileURLToPath(new URL('../plugin/', import.meta.url)), fileURLToPath(new URL('../../../dist/plugin/', import.meta.url))],
});

/** Loopback names a CSP source may hold (Chromium refuses an IPv6 literal such as [::1] there). */
const CSP_LOOPBACK_NAMES = LOOPBACK_NAMES.filter((n) => !n.startsWith('['));

interface PageSpec {
  readonly file: string;
  /** CSP frame-ancestors for a daemon on `port`: who may show the page in a frame. */
  readonly frameAncestors: (port: number) => string;
}

/** The served pages by route; the gate's public routes name the same paths. */
export const PAGES: Readonly<Record<string, PageSpec>> = Object.freeze({
  '/': { file: 'web.html', frameAncestors: () => "'none'" },
  '/photopea': {
    file: 'photopea.html',
    // Photopea shows plugin pages in an iframe; a page of the daemon's own origin may stand in for it
    // (the tests' host page; plugin/photopea/parent-origin.ts honours the same origins).
    frameAncestors: (port) => [PHOTOPEA_ORIGIN, ...CSP_LOOPBACK_NAMES.map((n) => `http://${n}:${port}`)].join(' '),
  },
});

function sha256(text: string): string {
  return `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
}

/** The hashes of every inline <script> and <style> element of a page (the only code CSP lets run). */
export function inlineHashes(html: string, tag: 'script' | 'style'): string[] {
  const out: string[] = [];
  for (const m of html.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'))) out.push(sha256(m[1] ?? ''));
  return out;
}

/** `host` is the request's Host header (checked by the gate): the daemon's remote name, if any. */
export function contentSecurityPolicy(html: string, port: number, frameAncestors: string, host?: string): string {
  const loopback = CSP_LOOPBACK_NAMES.map((n) => `${n}:${port}`);
  const named = host === undefined || host.startsWith('[') || loopback.includes(host.toLowerCase()) ? [] : [host.toLowerCase()];
  // A page served under another name (a remote bind address, or the team's public name over TLS,
  // directly or through a proxy) talks to the daemon under that same name, over http or https.
  const daemon = [...loopback.flatMap((n) => [`http://${n}`, `ws://${n}`]), ...named.flatMap((n) => [`http://${n}`, `ws://${n}`, `https://${n}`, `wss://${n}`])];
  return [
    "default-src 'none'",
    `script-src ${inlineHashes(html, 'script').join(' ') || "'none'"}`,
    `style-src ${inlineHashes(html, 'style').join(' ') || "'none'"}`,
    "img-src 'self' data: blob:",
    `connect-src ${daemon.join(' ')}`,
    `frame-ancestors ${frameAncestors}`,
    "base-uri 'none'",
    "form-action 'none'",
  ].join('; ');
}

async function readPage(file: string): Promise<string | undefined> {
  for (const dir of PAGES_DEFAULTS.dirs) {
    try {
      return await readFile(`${dir}${file}`, 'utf8');
    } catch {
      // not in this folder
    }
  }
  return undefined;
}

export function registerPageRoutes(router: Router, _ctx: ServiceContext): void {
  for (const [path, spec] of Object.entries(PAGES)) {
    router
      .route(path)
      .get(async (req: Request, res: Response) => {
        const html = await readPage(spec.file);
        if (html === undefined) throw new P2pzError('E_NOT_FOUND', 'This page has not been built.', 'Run `npm run build` in the p2pz folder, then reload.');
        res.status(200);
        res.setHeader('Content-Type', 'text/html; charset=utf-8');
        const port = req.socket.localPort ?? 0;
        const frameAncestors = spec.frameAncestors(port);
        res.setHeader('Content-Security-Policy', contentSecurityPolicy(html, port, frameAncestors, req.headers.host));
        res.setHeader('Referrer-Policy', 'no-referrer');
        if (frameAncestors === "'none'") res.setHeader('X-Frame-Options', 'DENY');
        res.setHeader('Content-Length', Buffer.byteLength(html));
        res.end(req.method === 'HEAD' ? undefined : html);
      })
      .all(methodNotAllowed);
  }
}
