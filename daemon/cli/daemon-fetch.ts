// One HTTP exchange between a CLI command and the running daemon, found through daemon.json. Plain
// HTTP on loopback, as always. A daemon that serves TLS itself (`p2pz serve --listen … --tls-cert`)
// is reached at its bind address or 127.0.0.1, a name its certificate need not hold, and with a
// certificate the machine may not trust (a studio's own CA, a test certificate): so the CLI pins the
// exact certificate instead. daemon.json (0600, written by the daemon) records its SHA-256
// fingerprint; the TLS connection is opened first, its peer certificate compared with the pin, and
// only then is the request, with the CLI token, written to it. A different certificate gets nothing.
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { DaemonInfo } from '../config.js';

export interface DaemonExchange {
  readonly status: number;
  /** The parsed JSON body, or undefined when it was not JSON. */
  readonly body: unknown;
}

export interface DaemonFetchInit {
  readonly method: string;
  readonly headers: Record<string, string>;
  readonly body?: string;
  readonly timeoutMs: number;
}

/** A TLS connection to `url`'s host whose certificate has the fingerprint `pin`; rejects otherwise. */
function pinnedSocket(url: URL, pin: string, timeoutMs: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const host = url.hostname.replace(/^\[|\]$/g, '');
    // The chain is not verified (the pin replaces it): the one certificate accepted is the daemon's.
    const socket = tlsConnect({ host, port: Number(url.port || 443), rejectUnauthorized: false, timeout: timeoutMs });
    socket.once('secureConnect', () => {
      if (socket.getPeerCertificate().fingerprint256 === pin) resolve(socket);
      else {
        socket.destroy();
        reject(new Error('The daemon presented a different certificate than daemon.json names.'));
      }
    });
    socket.once('timeout', () => socket.destroy(new Error('timeout')));
    socket.once('error', reject);
  });
}

function readAnswer(res: IncomingMessage): Promise<DaemonExchange> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => {
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        body = undefined;
      }
      resolve({ status: res.statusCode ?? 0, body });
    });
    res.on('error', reject);
  });
}

/** Sends one request to the daemon `info` describes; rejects when it cannot be reached (or its TLS
 *  certificate is not the pinned one). */
export async function daemonFetch(info: DaemonInfo, path: string, init: DaemonFetchInit): Promise<DaemonExchange> {
  const url = new URL(path, info.url);
  if (url.protocol === 'http:') {
    const response = await fetch(url, { method: init.method, headers: init.headers, ...(init.body === undefined ? {} : { body: init.body }), signal: AbortSignal.timeout(init.timeoutMs) });
    return { status: response.status, body: await response.json().catch(() => undefined) };
  }
  if (info.certSha256 === undefined) throw new Error('daemon.json names no certificate for this https daemon.');
  const socket = await pinnedSocket(url, info.certSha256, init.timeoutMs);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { method: init.method, path: url.pathname + url.search, headers: { Host: url.host, ...init.headers }, createConnection: () => socket, timeout: init.timeoutMs },
      (res) => void readAnswer(res).then(resolve, reject),
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(init.body);
  });
}
