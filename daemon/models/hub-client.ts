// The Hugging Face hub client: resolves a repository revision (a branch, tag or commit) to its commit,
// lists the files there with their sizes and hashes, and builds each file's download URL
// (`{hub}/{repo}/resolve/{commit}/{path}`, as `hf_hub_download` does). Pinning the commit first means
// that a branch moving during a long download cannot mix two versions of a model.
import { P2pzError } from '../../shared/protocol/index.js';
import { MODELS_DEFAULTS } from './defaults.js';
import { filesFromSiblings, filesFromTree, nextPageUrl, RevisionInfo, TreePage, type RemoteFile, type TreeEntry } from './hub-schema.js';
import { httpGet, readJsonCapped, type Fetch } from './http-get.js';

export interface HubClientOptions {
  /** Default MODELS_DEFAULTS.hubUrl. */
  readonly baseUrl?: string;
  readonly token?: string;
  readonly fetch?: Fetch;
  /** Time allowed for one API answer. */
  readonly timeoutMs?: number;
}

export interface RepoSnapshot {
  readonly repo: string;
  readonly revision: string;
  /** 40 hex digits. */
  readonly commit: string;
  readonly files: readonly RemoteFile[];
}

/** `owner/name` or `name`, as the hub spells repository ids. */
const REPO_ID = /^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,95}\/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$/;

export function checkRepoId(repo: string): string {
  if (!REPO_ID.test(repo) || repo.includes('..')) {
    throw new P2pzError('E_BAD_REQUEST', 'A model id looks like `owner/name` (letters, digits, ".", "_", "-").', 'For example: p2pz models install CompVis/stable-diffusion-v1-4 --revision onnx');
  }
  return repo;
}

export function checkRevision(revision: string): string {
  if (revision.length === 0 || revision.length > 200 || /[\0-\x20\\]|\.\./.test(revision)) {
    throw new P2pzError('E_BAD_REQUEST', 'The revision must be a branch, tag or commit name.');
  }
  return revision;
}

/** The hub's base URL: an explicit option, else P2PZ_HUB_URL, else huggingface.co. */
export function hubUrlFrom(env: Readonly<Record<string, string | undefined>>, explicit?: string): string {
  const raw = explicit ?? env[MODELS_DEFAULTS.hubUrlEnv] ?? MODELS_DEFAULTS.hubUrl;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new P2pzError('E_BAD_REQUEST', 'The hub address is not a URL.', `Set ${MODELS_DEFAULTS.hubUrlEnv} to an http(s) address such as ${MODELS_DEFAULTS.hubUrl}.`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new P2pzError('E_BAD_REQUEST', 'The hub address must be http(s).');
  return url.href.replace(/\/+$/, '');
}

export function hubTokenFrom(env: Readonly<Record<string, string | undefined>>): string | undefined {
  for (const name of MODELS_DEFAULTS.tokenEnv) {
    const v = env[name]?.trim();
    if (v) return v;
  }
  return undefined;
}

export class HubClient {
  readonly baseUrl: string;
  readonly #origin: string;
  readonly #token: string | undefined;
  readonly #fetch: Fetch | undefined;
  readonly #timeoutMs: number;

  constructor(options: HubClientOptions = {}) {
    this.baseUrl = (options.baseUrl ?? MODELS_DEFAULTS.hubUrl).replace(/\/+$/, '');
    this.#origin = new URL(this.baseUrl).origin;
    this.#token = options.token;
    this.#fetch = options.fetch;
    this.#timeoutMs = options.timeoutMs ?? MODELS_DEFAULTS.stallTimeoutMs;
  }

  /** `{hub}/{repo}/resolve/{commit}/{path}`, each path segment escaped. */
  fileUrl(repo: string, commit: string, path: string): string {
    return `${this.baseUrl}/${repo}/resolve/${encodeURIComponent(commit)}/${path.split('/').map(encodeURIComponent).join('/')}`;
  }

  /** GET with the token for the hub's origin only (see http-get.ts). */
  get(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<Response> {
    return httpGet(url, {
      headers,
      ...(signal ? { signal } : {}),
      ...(this.#token ? { token: this.#token, authOrigin: this.#origin } : {}),
      ...(this.#fetch ? { fetch: this.#fetch } : {}),
    });
  }

  /** The commit of `revision` and every file there with its size and hash. */
  async snapshot(repo: string, revision: string, signal?: AbortSignal): Promise<RepoSnapshot> {
    checkRepoId(repo);
    checkRevision(revision);
    const info = RevisionInfo.safeParse(await this.#api(`${this.baseUrl}/api/models/${repo}/revision/${encodeURIComponent(revision)}?blobs=true`, repo, revision, signal));
    if (!info.success) throw malformed();
    const commit = info.data.sha;
    const files = filesFromSiblings(info.data) ?? filesFromTree(await this.#tree(repo, commit, signal));
    if (files.length > MODELS_DEFAULTS.maxFiles) throw new P2pzError('E_DOWNLOAD_FAILED', 'The repository lists too many files.');
    return { repo, revision, commit, files };
  }

  async #tree(repo: string, commit: string, signal?: AbortSignal): Promise<TreeEntry[]> {
    const entries: TreeEntry[] = [];
    let url: string | undefined = `${this.baseUrl}/api/models/${repo}/tree/${commit}?recursive=true`;
    while (url) {
      const { body, next } = await this.#apiPage(url, repo, commit, signal);
      const page = TreePage.safeParse(body);
      if (!page.success) throw malformed();
      entries.push(...page.data);
      if (entries.length > MODELS_DEFAULTS.maxFiles) throw new P2pzError('E_DOWNLOAD_FAILED', 'The repository lists too many files.');
      // A next page must stay on the hub (the token goes with it).
      url = next === undefined ? undefined : new URL(next, url).href;
      if (url !== undefined && new URL(url).origin !== this.#origin) throw malformed();
    }
    return entries;
  }

  async #api(url: string, repo: string, revision: string, signal?: AbortSignal): Promise<unknown> {
    return (await this.#apiPage(url, repo, revision, signal)).body;
  }

  async #apiPage(url: string, repo: string, revision: string, signal?: AbortSignal): Promise<{ body: unknown; next: string | undefined }> {
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    let response: Response;
    try {
      response = await this.get(url, { accept: 'application/json' }, combined);
      const status = response.status;
      if (status === 401 || status === 403) {
        await response.body?.cancel().catch(() => undefined);
        throw new P2pzError(
          'E_DOWNLOAD_FAILED',
          `The hub refused access to ${repo}.`,
          'If the model is gated, accept its licence on huggingface.co and set HF_TOKEN to an access token, then run the command again.',
        );
      }
      if (status === 404) {
        await response.body?.cancel().catch(() => undefined);
        throw new P2pzError('E_MODEL_MISSING', `The hub has no model ${repo} at revision “${revision}”.`, 'Check the model id and --revision (for example CompVis/stable-diffusion-v1-4 --revision onnx).');
      }
      if (status !== 200) {
        await response.body?.cancel().catch(() => undefined);
        throw new P2pzError('E_DOWNLOAD_FAILED', `The hub answered HTTP ${status}.`);
      }
      return { body: await readJsonCapped(response, MODELS_DEFAULTS.maxApiBytes), next: nextPageUrl(response.headers.get('link')) };
    } catch (err) {
      if (err instanceof P2pzError) throw err;
      if (signal?.aborted) throw new P2pzError('E_DOWNLOAD_FAILED', 'The download was cancelled.', 'Run the same command again to resume.');
      if (timeout.aborted) throw new P2pzError('E_TIMEOUT', 'The hub did not answer in time.', 'Check the network connection and run the command again.');
      throw new P2pzError('E_DOWNLOAD_FAILED', 'The hub could not be reached.');
    }
  }
}

function malformed(): P2pzError {
  return new P2pzError('E_DOWNLOAD_FAILED', 'The hub sent an unexpected file listing.', 'Check that P2PZ_HUB_URL names a Hugging Face hub, or update p2pz.');
}
