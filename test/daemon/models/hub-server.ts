// A local stand-in for the Hugging Face hub on 127.0.0.1, serving a folder as one repository the way
// the hub does: the revision API (`siblings` with `lfs.sha256` or `blobId`), the paginated tree API
// (`lfs.oid`, `Link: <…>; rel="next"`), and `/{repo}/resolve/{rev}/{path}`, which answers large
// ("LFS") files with a redirect to a storage host on another origin (`localhost`) that honours
// `Range`. Faults can be injected per file: a dropped connection, corrupted bytes, a stall, or a
// storage host that ignores `Range`. Every request is recorded.
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { join, relative, sep } from 'node:path';

export interface HubFile {
  readonly path: string;
  readonly bytes: Buffer;
  /** Served through the storage redirect, listed with `lfs`. */
  readonly lfs: boolean;
  readonly sha256: string;
  readonly gitOid: string;
}

export interface Fault {
  /** File path in the repository. */
  readonly path: string;
  readonly kind: 'drop' | 'corrupt' | 'stall' | 'ignore-range';
  /** Bytes sent before dropping or stalling (counted from the start of the response). */
  readonly after?: number;
  /** How many responses for the file the fault applies to (default 1). */
  times?: number;
}

export interface RecordedRequest {
  readonly url: string;
  readonly host: string;
  readonly range: string | undefined;
  readonly authorization: string | undefined;
}

export interface HubServerOptions {
  readonly repo: string;
  readonly revision: string;
  readonly commit: string;
  /** Folder served as the repository. */
  readonly root: string;
  /** Files at least this large are LFS files (default 4096 bytes). */
  readonly lfsThreshold?: number;
  /** Omit sizes/hashes from `siblings`, so clients must use the tree API. */
  readonly bareSiblings?: boolean;
  /** Entries per tree page (default 1000). */
  readonly pageSize?: number;
  /** Require this bearer token on the API and resolve routes (a gated repository). */
  readonly token?: string;
  /** Extra listing entries (e.g. unsafe paths) appended to both listings. */
  readonly extraListing?: ReadonlyArray<{ path: string; size: number }>;
}

export interface HubServer {
  readonly url: string;
  readonly files: ReadonlyMap<string, HubFile>;
  readonly requests: RecordedRequest[];
  readonly faults: Fault[];
  close(): Promise<void>;
}

async function listFolder(root: string): Promise<string[]> {
  const out: string[] = [];
  const visit = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      if (e.isDirectory()) await visit(join(dir, e.name));
      else if (e.isFile()) out.push(relative(root, join(dir, e.name)).split(sep).join('/'));
    }
  };
  await visit(root);
  return out.sort();
}

export function gitBlobOid(bytes: Buffer): string {
  return createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
}

export async function startHubServer(options: HubServerOptions): Promise<HubServer> {
  const threshold = options.lfsThreshold ?? 4096;
  const files = new Map<string, HubFile>();
  for (const path of await listFolder(options.root)) {
    const bytes = await readFile(join(options.root, ...path.split('/')));
    files.set(path, {
      path,
      bytes,
      lfs: bytes.length >= threshold,
      sha256: createHash('sha256').update(bytes).digest('hex'),
      gitOid: gitBlobOid(bytes),
    });
  }
  const requests: RecordedRequest[] = [];
  const faults: Fault[] = [];
  const sockets = new Set<Socket>();
  let port = 0;
  const api = `/api/models/${options.repo}`;
  const revisions = new Set([options.revision, options.commit]);

  const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
    res.end(text);
  };

  const takeFault = (path: string): Fault | undefined => {
    const f = faults.find((x) => x.path === path && (x.times ?? 1) > 0);
    if (f) f.times = (f.times ?? 1) - 1;
    return f;
  };

  const sendContent = (req: IncomingMessage, res: ServerResponse, file: HubFile): void => {
    const fault = takeFault(file.path);
    let body = file.bytes;
    if (fault?.kind === 'corrupt') {
      body = Buffer.from(body);
      body[body.length >> 1] = (body[body.length >> 1] ?? 0) ^ 0xff;
    }
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    let start = 0;
    if (m && fault?.kind !== 'ignore-range') {
      start = Number(m[1]);
      if (start >= body.length) {
        res.writeHead(416, { 'content-range': `bytes */${body.length}` });
        res.end();
        return;
      }
      res.writeHead(206, { 'content-length': body.length - start, 'content-range': `bytes ${start}-${body.length - 1}/${body.length}`, 'accept-ranges': 'bytes', etag: `"${file.sha256}"` });
    } else {
      res.writeHead(200, { 'content-length': body.length, 'accept-ranges': 'bytes', etag: `"${file.sha256}"` });
    }
    const slice = body.subarray(start);
    if (fault?.kind === 'drop' || fault?.kind === 'stall') {
      const n = Math.min(fault.after ?? 0, slice.length);
      res.write(slice.subarray(0, n), () => {
        if (fault.kind === 'drop') res.socket?.destroy();
        // stall: keep the connection open and send nothing more
      });
      return;
    }
    res.end(slice);
  };

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', `http://${req.headers.host ?? '127.0.0.1'}`);
    requests.push({ url: url.pathname + url.search, host: req.headers.host ?? '', range: req.headers.range, authorization: req.headers.authorization });
    const authorized = !options.token || req.headers.authorization === `Bearer ${options.token}`;
    const path = decodeURIComponent(url.pathname);

    if (path.startsWith('/cdn/')) {
      const file = [...files.values()].find((f) => f.sha256 === path.slice('/cdn/'.length));
      if (!file) return json(res, 404, { error: 'Entry not found' });
      return sendContent(req, res, file);
    }
    if (path.startsWith(`${api}/revision/`)) {
      if (!authorized) return json(res, 401, { error: 'Access to model is restricted.' });
      const rev = path.slice(`${api}/revision/`.length);
      if (!revisions.has(rev)) return json(res, 404, { error: 'Invalid rev id' });
      const siblings = [...files.values()].map((f) =>
        options.bareSiblings
          ? { rfilename: f.path }
          : { rfilename: f.path, size: f.bytes.length, blobId: f.lfs ? gitBlobOid(Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${f.sha256}\nsize ${f.bytes.length}\n`)) : f.gitOid, ...(f.lfs ? { lfs: { sha256: f.sha256, size: f.bytes.length, pointerSize: 134 } } : {}) },
      );
      const extra = (options.extraListing ?? []).map((e) => ({ rfilename: e.path, size: e.size, blobId: '0'.repeat(40) }));
      return json(res, 200, { _id: 'x', id: options.repo, modelId: options.repo, sha: options.commit, private: false, siblings: [...siblings, ...extra] });
    }
    if (path.startsWith(`${api}/tree/`)) {
      if (!authorized) return json(res, 401, { error: 'Access to model is restricted.' });
      const rev = path.slice(`${api}/tree/`.length);
      if (!revisions.has(rev)) return json(res, 404, { error: 'Invalid rev id' });
      const dirs = new Set<string>();
      for (const f of files.keys()) {
        const parts = f.split('/');
        for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
      }
      const entries = [
        ...[...dirs].sort().map((d) => ({ type: 'directory', oid: 'f'.repeat(40), size: 0, path: d })),
        ...[...files.values()].map((f) => ({
          type: 'file',
          oid: f.lfs ? 'a'.repeat(40) : f.gitOid,
          size: f.bytes.length,
          path: f.path,
          ...(f.lfs ? { lfs: { oid: f.sha256, size: f.bytes.length, pointerSize: 134 }, xetHash: 'b'.repeat(64) } : {}),
        })),
        ...(options.extraListing ?? []).map((e) => ({ type: 'file', oid: '0'.repeat(40), size: e.size, path: e.path })),
      ];
      const size = options.pageSize ?? 1000;
      const cursor = Number(url.searchParams.get('cursor') ?? '0');
      const page = entries.slice(cursor, cursor + size);
      const headers: Record<string, string> = {};
      if (cursor + size < entries.length) headers['link'] = `<http://127.0.0.1:${port}${api}/tree/${rev}?recursive=true&cursor=${cursor + size}>; rel="next"`;
      return json(res, 200, page, headers);
    }
    const resolve = /^\/(.+?)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    if (resolve && resolve[1] === options.repo) {
      if (!authorized) return json(res, 401, { error: 'Access to model is restricted.' });
      if (!revisions.has(resolve[2] ?? '')) return json(res, 404, { error: 'Invalid rev id' });
      const file = files.get(resolve[3] ?? '');
      if (!file) return json(res, 404, { error: 'Entry not found' });
      if (file.lfs) {
        // Large files live on the storage host: another origin, reached by an absolute redirect.
        res.writeHead(302, { location: `http://localhost:${port}/cdn/${file.sha256}?X-Amz-Signature=abc`, 'x-linked-size': String(file.bytes.length), 'x-linked-etag': `"${file.sha256}"`, 'x-repo-commit': options.commit });
        res.end();
        return;
      }
      res.setHeader('x-repo-commit', options.commit);
      return sendContent(req, res, file);
    }
    json(res, 404, { error: 'Repository not found' });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    files,
    requests,
    faults,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
