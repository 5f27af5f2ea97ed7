// GET with redirects followed by hand: the hub answers large files with a redirect to its storage
// hosts (and renamed repositories with a relative one). The access token is sent only to the hub's
// own origin, never to another host a redirect leads to, and only http(s) targets are followed.
import { P2pzError } from '../../shared/protocol/index.js';
import { MODELS_DEFAULTS } from './defaults.js';

export type Fetch = (input: string, init: RequestInit) => Promise<Response>;

export interface HttpGetOptions {
  readonly headers?: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal;
  /** Sent as `Authorization: Bearer …` to `authOrigin` only. */
  readonly token?: string;
  readonly authOrigin?: string;
  readonly maxRedirects?: number;
  readonly fetch?: Fetch;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** Follows up to `maxRedirects` redirects and returns the final response (any status). Network
 *  failures reject with the fetch error (the caller decides whether to retry). */
export async function httpGet(url: string, options: HttpGetOptions = {}): Promise<Response> {
  const doFetch = options.fetch ?? ((input: string, init: RequestInit) => fetch(input, init));
  const max = options.maxRedirects ?? MODELS_DEFAULTS.maxRedirects;
  let current = new URL(url);
  for (let hop = 0; ; hop++) {
    const headers: Record<string, string> = { 'user-agent': 'p2pz', ...options.headers };
    if (options.token && options.authOrigin && current.origin === options.authOrigin) headers['authorization'] = `Bearer ${options.token}`;
    const response = await doFetch(current.href, {
      method: 'GET',
      headers,
      redirect: 'manual',
      ...(options.signal ? { signal: options.signal } : {}),
    });
    if (!REDIRECTS.has(response.status)) return response;
    const location = response.headers.get('location');
    await response.body?.cancel().catch(() => undefined);
    if (!location || hop >= max) {
      throw new P2pzError('E_DOWNLOAD_FAILED', 'The hub redirected too often.', 'Try again later, or check P2PZ_HUB_URL.');
    }
    const next = new URL(location, current);
    if (next.protocol !== 'https:' && next.protocol !== 'http:') {
      throw new P2pzError('E_DOWNLOAD_FAILED', 'The hub redirected to an unsupported address.');
    }
    current = next;
  }
}

/** Reads a JSON body of at most `maxBytes` bytes (a larger one is refused while it streams). */
export async function readJsonCapped(response: Response, maxBytes: number): Promise<unknown> {
  const declared = Number(response.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body?.cancel().catch(() => undefined);
    throw new P2pzError('E_DOWNLOAD_FAILED', 'The hub sent an oversized answer.');
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (response.body) {
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        await reader.cancel().catch(() => undefined);
        throw new P2pzError('E_DOWNLOAD_FAILED', 'The hub sent an oversized answer.');
      }
      chunks.push(value);
    }
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new P2pzError('E_DOWNLOAD_FAILED', 'The hub sent an answer that is not JSON.', 'Check that P2PZ_HUB_URL names a Hugging Face hub.');
  }
}
