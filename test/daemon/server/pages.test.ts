// The two static pages the daemon serves (routes/pages.ts): public without a token, only by GET/HEAD on
// their exact paths, behind the same Host and Origin gate as the API, with a Content-Security-Policy
// that lets only the page's own inline script and style run (their hashes computed here again from
// the served HTML), connects only to this daemon, and lets only Photopea (or a local page) frame the
// Photopea page and nobody frame the standalone page.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codeOf, send, startTestDaemon, type TestDaemon } from './helpers.js';

let t: TestDaemon;
beforeAll(async () => {
  t = await startTestDaemon();
});
afterAll(async () => {
  await t.stop();
});

function directives(csp: string | string[] | undefined): Map<string, string[]> {
  expect(typeof csp).toBe('string');
  return new Map(
    String(csp)
      .split(';')
      .map((d) => d.trim().split(/\s+/))
      .map(([name, ...values]) => [name ?? '', values]),
  );
}

function hashOf(html: string, tag: string): string {
  const m = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(html);
  expect(m).not.toBeNull();
  return `'sha256-${createHash('sha256').update(m?.[1] ?? '').digest('base64')}'`;
}

describe('static pages', () => {
  it('serves the standalone page at / without a token, with a strict CSP, unframeable', async () => {
    const reply = await send(t.daemon, { path: '/' });
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(reply.text).toContain('id="drop"');
    expect(reply.text).toContain('id="preview"');
    const csp = directives(reply.headers['content-security-policy']);
    expect(csp.get('default-src')).toEqual(["'none'"]);
    expect(csp.get('script-src')).toEqual([hashOf(reply.text, 'script')]);
    expect(csp.get('style-src')).toEqual([hashOf(reply.text, 'style')]);
    expect(csp.get('img-src')).toEqual(["'self'", 'data:', 'blob:']);
    const port = t.daemon.port;
    expect(csp.get('connect-src')).toEqual([`http://localhost:${port}`, `ws://localhost:${port}`, `http://127.0.0.1:${port}`, `ws://127.0.0.1:${port}`]);
    expect(csp.get('frame-ancestors')).toEqual(["'none'"]);
    expect(csp.get('base-uri')).toEqual(["'none'"]);
    expect(csp.get('form-action')).toEqual(["'none'"]);
    expect(reply.headers['x-frame-options']).toBe('DENY');
    expect(reply.headers['x-content-type-options']).toBe('nosniff');
    expect(reply.headers['cache-control']).toBe('no-store');
    expect(reply.headers['referrer-policy']).toBe('no-referrer');
  });

  it('serves the Photopea page at /photopea, frameable only by Photopea and the daemon’s own origins (those it accepts)', async () => {
    const reply = await send(t.daemon, { path: '/photopea', headers: { Host: `localhost:${t.daemon.port}` } });
    expect(reply.status).toBe(200);
    expect(reply.text).toContain('id="preview"');
    expect(reply.text).not.toContain('id="drop"');
    const csp = directives(reply.headers['content-security-policy']);
    // The same origins the daemon's Origin check lets in (origin.ts), less `null`: another port on this
    // machine is another site, and may not frame the page any more than call the API.
    expect(csp.get('frame-ancestors')).toEqual(['https://www.photopea.com', `http://localhost:${t.daemon.port}`, `http://127.0.0.1:${t.daemon.port}`]);
    expect(csp.get('script-src')).toEqual([hashOf(reply.text, 'script')]);
    expect(reply.headers['x-frame-options']).toBeUndefined();
  });

  it('answers HEAD without a body', async () => {
    const reply = await send(t.daemon, { method: 'HEAD', path: '/photopea' });
    expect(reply.status).toBe(200);
    expect(reply.bytes.length).toBe(0);
    expect(Number(reply.headers['content-length'])).toBeGreaterThan(1000);
  });

  it('opens nothing else: other methods, other spellings and other files still need the token', async () => {
    for (const [method, path] of [['POST', '/'], ['DELETE', '/photopea'], ['GET', '/photopea/'], ['GET', '/Photopea'], ['GET', '/index.html'], ['GET', '/web.html'], ['GET', '/favicon.ico'], ['GET', '/../dist/plugin/web.html']] as const) {
      const reply = await send(t.daemon, { method, path });
      expect({ method, path, status: reply.status, code: codeOf(reply) }).toEqual({ method, path, status: 401, code: 'E_UNAUTHORIZED' });
    }
    // With a token, another method is refused as such.
    expect((await send(t.daemon, { method: 'POST', path: '/', token: t.token, json: { v: 1 } })).status).toBe(405);
  });

  it('keeps the Host and Origin gate in front of the pages', async () => {
    expect((await send(t.daemon, { path: '/', headers: { Host: 'attacker.example' } })).status).toBe(403);
    expect((await send(t.daemon, { path: '/photopea', headers: { Origin: 'https://attacker.example' } })).status).toBe(403);
    expect((await send(t.daemon, { path: '/photopea', headers: { Origin: 'https://www.photopea.com' } })).status).toBe(200);
  });
});
