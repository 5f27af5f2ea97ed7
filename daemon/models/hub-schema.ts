// The Hugging Face hub's JSON answers that installation reads, as zod schemas, and their reduction to
// one list of remote files with what each must hash to. Two listings exist:
//   GET /api/models/{repo}/revision/{rev}?blobs=true → {id, sha, siblings: [{rfilename, size, blobId,
//       lfs?: {sha256, size, pointerSize}}]}: the commit a branch points at, with every file
//   GET /api/models/{repo}/tree/{rev}?recursive=true → [{type: 'file'|'directory', path, oid, size,
//       lfs?: {oid, size, pointerSize}}], paginated with a `Link: <…>; rel="next"` header
// For a file stored in LFS (or Xet, which keeps the LFS record), `lfs` gives the SHA-256 and size of
// the content; for a plain git file, `oid`/`blobId` is its git blob id: SHA-1 of "blob {size}\0" +
// content. Either way, every downloaded byte is checked against the listing.
import { z } from 'zod';
import { P2pzError } from '../../shared/protocol/index.js';

const Sha256 = z.string().regex(/^[0-9a-f]{64}$/);
const GitOid = z.string().regex(/^[0-9a-f]{40}$/);
const Size = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

export const RevisionInfo = z.looseObject({
  id: z.string().max(200).optional(),
  /** The commit the revision resolves to. */
  sha: GitOid,
  siblings: z
    .array(
      z.looseObject({
        rfilename: z.string().min(1).max(1000),
        size: Size.optional(),
        blobId: GitOid.optional(),
        lfs: z.looseObject({ sha256: Sha256, size: Size }).optional(),
      }),
    )
    .optional(),
});
export type RevisionInfo = z.infer<typeof RevisionInfo>;

export const TreeEntry = z.looseObject({
  type: z.enum(['file', 'directory']),
  path: z.string().min(1).max(1000),
  oid: GitOid.optional(),
  size: Size.optional(),
  lfs: z.looseObject({ oid: Sha256, size: Size }).optional(),
});
export const TreePage = z.array(TreeEntry);
export type TreeEntry = z.infer<typeof TreeEntry>;

/** A file of a repository at one commit and what its content must be. */
export interface RemoteFile {
  /** Repository-relative path with `/` separators, checked by `checkRepoPath`. */
  readonly path: string;
  readonly size: number;
  /** SHA-256 of the content (LFS/Xet files). */
  readonly sha256?: string;
  /** Git blob id (plain files; also given for LFS files, where it hashes the pointer, so unused then). */
  readonly gitOid?: string;
}

/**
 * A repository path is used as a path inside the staging folder: only plain relative segments are
 * allowed (no `..`, `.`, empty or absolute parts, no backslashes or control characters), so no listing
 * can make the installer write outside its folder.
 */
export function checkRepoPath(path: string): string {
  const segments = path.split('/');
  const bad =
    path.length === 0 ||
    path.length > 1000 ||
    /[\\\0-\x1f:]/.test(path) ||
    segments.some((s) => s === '' || s === '.' || s === '..');
  if (bad) throw new P2pzError('E_DOWNLOAD_FAILED', 'The hub listed a file with an unsafe path.', 'Check that the hub address (P2PZ_HUB_URL) is a Hugging Face hub.');
  return path;
}

function checked(file: RemoteFile): RemoteFile {
  if (file.sha256 === undefined && file.gitOid === undefined) {
    throw new P2pzError('E_DOWNLOAD_FAILED', 'The hub listed a file without a hash, so it cannot be verified.', 'Check that the hub address (P2PZ_HUB_URL) is a Hugging Face hub.');
  }
  return file;
}

/** Files of a revision listing with complete metadata, or undefined when the listing lacks sizes or
 *  hashes (then the tree API is asked). */
export function filesFromSiblings(info: RevisionInfo): RemoteFile[] | undefined {
  if (!info.siblings) return undefined;
  const files: RemoteFile[] = [];
  for (const s of info.siblings) {
    if (s.lfs) files.push({ path: checkRepoPath(s.rfilename), size: s.lfs.size, sha256: s.lfs.sha256, ...(s.blobId ? { gitOid: s.blobId } : {}) });
    else if (s.size !== undefined && s.blobId !== undefined) files.push({ path: checkRepoPath(s.rfilename), size: s.size, gitOid: s.blobId });
    else return undefined;
  }
  return files;
}

/** The files of tree pages (directories dropped). */
export function filesFromTree(entries: readonly TreeEntry[]): RemoteFile[] {
  const files: RemoteFile[] = [];
  for (const e of entries) {
    if (e.type !== 'file') continue;
    if (e.lfs) files.push(checked({ path: checkRepoPath(e.path), size: e.lfs.size, sha256: e.lfs.oid, ...(e.oid ? { gitOid: e.oid } : {}) }));
    else if (e.size !== undefined) files.push(checked({ path: checkRepoPath(e.path), size: e.size, ...(e.oid ? { gitOid: e.oid } : {}) }));
    else throw new P2pzError('E_DOWNLOAD_FAILED', 'The hub listed a file without its size.');
  }
  return files;
}

/** The URL of the next page from a `Link` header (RFC 8288), if any. */
export function nextPageUrl(link: string | null): string | undefined {
  if (!link) return undefined;
  for (const part of link.split(',')) {
    const m = /<([^>]+)>\s*;\s*rel="?next"?/i.exec(part.trim());
    if (m?.[1]) return m[1];
  }
  return undefined;
}
