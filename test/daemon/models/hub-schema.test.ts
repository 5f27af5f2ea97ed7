// The hub's answers reduced to files with hashes, its pagination header, and the checks on what a
// listing or the user may name (paths, repository ids, revisions, the hub address).
import { describe, expect, it } from 'vitest';
import { checkRepoId, checkRevision, hubTokenFrom, hubUrlFrom } from '../../../daemon/models/hub-client.js';
import { checkRepoPath, filesFromSiblings, filesFromTree, nextPageUrl, RevisionInfo, TreePage } from '../../../daemon/models/hub-schema.js';

const SHA = 'c'.repeat(64);
const OID = 'd'.repeat(40);

describe('hub listings', () => {
  it('siblings with blobs: LFS files by SHA-256, plain files by blob id; incomplete → undefined', () => {
    const info = RevisionInfo.parse({
      id: 'a/b',
      sha: 'e'.repeat(40),
      siblings: [
        { rfilename: 'unet/weights.pb', size: 3, blobId: OID, lfs: { sha256: SHA, size: 3_440_000_000, pointerSize: 134 } },
        { rfilename: 'model_index.json', size: 540, blobId: OID },
      ],
    });
    expect(filesFromSiblings(info)).toEqual([
      { path: 'unet/weights.pb', size: 3_440_000_000, sha256: SHA, gitOid: OID },
      { path: 'model_index.json', size: 540, gitOid: OID },
    ]);
    expect(filesFromSiblings(RevisionInfo.parse({ sha: 'e'.repeat(40), siblings: [{ rfilename: 'x' }] }))).toBeUndefined();
    expect(filesFromSiblings(RevisionInfo.parse({ sha: 'e'.repeat(40) }))).toBeUndefined();
  });

  it('tree pages: directories dropped, lfs.oid is the SHA-256', () => {
    const page = TreePage.parse([
      { type: 'directory', oid: OID, size: 0, path: 'unet' },
      { type: 'file', oid: OID, size: 134, path: 'unet/model.onnx', lfs: { oid: SHA, size: 1_090_000, pointerSize: 134 }, xetHash: 'f'.repeat(64) },
      { type: 'file', oid: OID, size: 12, path: 'scheduler/scheduler_config.json' },
    ]);
    expect(filesFromTree(page)).toEqual([
      { path: 'unet/model.onnx', size: 1_090_000, sha256: SHA, gitOid: OID },
      { path: 'scheduler/scheduler_config.json', size: 12, gitOid: OID },
    ]);
    expect(RevisionInfo.safeParse({ sha: 'not-a-commit' }).success).toBe(false);
  });

  it('follows rel="next" in a Link header', () => {
    expect(nextPageUrl('<https://huggingface.co/api/models/a/b/tree/main?recursive=true&cursor=ZXlK>; rel="next"')).toBe(
      'https://huggingface.co/api/models/a/b/tree/main?recursive=true&cursor=ZXlK',
    );
    expect(nextPageUrl('<https://x/1>; rel="prev", <https://x/3>; rel="next"')).toBe('https://x/3');
    expect(nextPageUrl('<https://x/1>; rel="prev"')).toBeUndefined();
    expect(nextPageUrl(null)).toBeUndefined();
  });
});

describe('names and addresses', () => {
  it('repository paths are plain relative segments', () => {
    expect(checkRepoPath('unet/weights.pb')).toBe('unet/weights.pb');
    for (const bad of ['', '../x', 'a/../b', 'a//b', '/abs', 'a\\b', 'C:x', './a', 'a/\u0000']) {
      expect(() => checkRepoPath(bad), JSON.stringify(bad)).toThrow(/unsafe path/);
    }
  });

  it('repository ids and revisions', () => {
    expect(checkRepoId('CompVis/stable-diffusion-v1-4')).toBe('CompVis/stable-diffusion-v1-4');
    expect(checkRepoId('gpt2')).toBe('gpt2');
    for (const bad of ['a/b/c', '../x', 'a/..', '-a/b', 'a b', '']) expect(() => checkRepoId(bad), bad).toThrow();
    expect(checkRevision('refs/pr/1')).toBe('refs/pr/1');
    for (const bad of ['', 'a b', '../main', 'a\\b']) expect(() => checkRevision(bad), bad).toThrow();
  });

  it('the hub address: option, else P2PZ_HUB_URL, else huggingface.co; the token from HF_TOKEN', () => {
    expect(hubUrlFrom({})).toBe('https://huggingface.co');
    expect(hubUrlFrom({ P2PZ_HUB_URL: 'http://127.0.0.1:9000/' })).toBe('http://127.0.0.1:9000');
    expect(hubUrlFrom({ P2PZ_HUB_URL: 'http://127.0.0.1:9000' }, 'https://mirror.example/hf/')).toBe('https://mirror.example/hf');
    expect(() => hubUrlFrom({ P2PZ_HUB_URL: 'file:///etc' })).toThrow(/http/);
    expect(() => hubUrlFrom({ P2PZ_HUB_URL: 'not a url' })).toThrow(/not a URL/);
    expect(hubTokenFrom({ HF_TOKEN: ' hf_x ' })).toBe('hf_x');
    expect(hubTokenFrom({ HUGGING_FACE_HUB_TOKEN: 'hf_y' })).toBe('hf_y');
    expect(hubTokenFrom({})).toBeUndefined();
  });
});
