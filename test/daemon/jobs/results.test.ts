// The file store for uploads and results, on a real temporary folder: modes, stale files, round trip,
// expiry, the total size cap (oldest first), the sweep timer, and ids that must be refused before any
// file access (the fs module is wrapped so the test can see every call the store makes).
import * as fs from 'node:fs/promises';
import { chmod, mkdir, mkdtemp, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RESULT_STORE_DEFAULTS, ResultStore } from '../../../daemon/jobs/results.js';
import type { ResultStoreOptions } from '../../../daemon/jobs/results.js';
import { SERVER_ID_PATTERN, isServerId, newId } from '../../../daemon/jobs/ids.js';
import { createLogger } from '../../../daemon/log.js';
import { Id, P2pzError } from '../../../shared/protocol/index.js';

vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  const spied = Object.fromEntries(
    Object.entries(real).map(([name, value]) => [name, typeof value === 'function' ? vi.fn(value) : value]),
  );
  return { ...spied, default: spied };
});

const FS_CALLS = ['readFile', 'writeFile', 'unlink', 'stat', 'lstat', 'open', 'readdir', 'access', 'realpath', 'rm'] as const;

function fsCallCount(): number {
  return FS_CALLS.reduce((n, name) => n + vi.mocked(fs[name]).mock.calls.length, 0);
}

const PNG = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]);

let dir: string;
let clock: number;
const stores: ResultStore[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'p2pz-store-'));
  clock = 50_000;
});

afterEach(async () => {
  vi.useRealTimers();
  for (const store of stores.splice(0)) store.close();
  await rm(dir, { recursive: true, force: true });
});

async function open(options: ResultStoreOptions = {}, folder = join(dir, 'results')): Promise<ResultStore> {
  const store = await ResultStore.open(folder, { sweepIntervalMs: 0, now: () => clock, ...options });
  stores.push(store);
  return store;
}

function bytes(n: number, fill = 1): Uint8Array {
  return new Uint8Array(n).fill(fill);
}

describe('ids', () => {
  it('are 22 base64url characters of 128 random bits, inside the protocol Id alphabet', () => {
    const ids = Array.from({ length: 200 }, () => newId());
    expect(new Set(ids).size).toBe(200);
    for (const id of ids) {
      expect(id).toMatch(SERVER_ID_PATTERN);
      expect(Id.safeParse(id).success).toBe(true);
      expect(Buffer.from(id, 'base64url')).toHaveLength(16);
    }
    // The last character carries only 2 bits: 'B' can never end a 16-byte id.
    expect(isServerId('A'.repeat(21) + 'B')).toBe(false);
    expect(isServerId('A'.repeat(22))).toBe(true);
  });
});

describe('open', () => {
  it('creates the folder with mode 0700 and tightens an existing one', async () => {
    await open({}, join(dir, 'a', 'b', 'results'));
    expect((await stat(join(dir, 'a', 'b', 'results'))).mode & 0o777).toBe(0o700);
    await mkdir(join(dir, 'loose'), { mode: 0o755 });
    await chmod(join(dir, 'loose'), 0o755);
    await open({}, join(dir, 'loose'));
    expect((await stat(join(dir, 'loose'))).mode & 0o777).toBe(0o700);
  });

  it('removes expired files a previous run left, and nothing else', async () => {
    clock = Date.now();
    const folder = join(dir, 'results');
    const previous = await open({ maxAgeMs: 60_000 }, folder);
    const old = await previous.put(PNG, { mime: 'image/png', width: 1, height: 1 });
    const young = await previous.put(PNG, { mime: 'image/png', width: 1, height: 1 });
    const oldWebp = `${newId()}.webp`;
    await writeFile(join(folder, oldWebp), PNG);
    const folderName = `${newId()}.png`;
    await mkdir(join(folder, folderName));
    for (const name of ['notes.txt', 'short.png']) await writeFile(join(folder, name), 'not ours');
    const expiredAt = (clock - 60_000) / 1000;
    for (const name of [`${old.id}.png`, oldWebp, folderName, 'notes.txt', 'short.png']) {
      await utimes(join(folder, name), expiredAt, expiredAt);
    }

    const reopened = await open({ maxAgeMs: 60_000 }, folder);
    const names = async (): Promise<string[]> =>
      (await readdir(folder, { withFileTypes: true })).map((e) => `${e.name}${e.isDirectory() ? '/' : ''}`).sort();
    expect(await names()).toEqual([`${folderName}/`, `${young.id}.png`, 'notes.txt', 'short.png'].sort());
    // The young file may belong to a daemon still running on this folder: it keeps serving it.
    expect(await previous.get(young.id)).toBeDefined();
    expect(await reopened.get(young.id)).toBeUndefined();

    // Once it is as old as an expired file, a sweep removes it.
    clock += 120_000;
    await reopened.sweep();
    expect(await names()).toEqual([`${folderName}/`, 'notes.txt', 'short.png'].sort());
  });
});

describe('put and get', () => {
  it('round-trips bytes and metadata through a file of mode 0600', async () => {
    const store = await open();
    const file = await store.put(PNG, { mime: 'image/png', width: 640, height: 480, role: 'mask' });
    expect(file).toEqual({
      id: expect.stringMatching(SERVER_ID_PATTERN),
      mime: 'image/png',
      width: 640,
      height: 480,
      role: 'mask',
      size: PNG.byteLength,
      createdAt: 50_000,
      expiresAt: 50_000 + RESULT_STORE_DEFAULTS.maxAgeMs,
    });
    const got = await store.get(file.id);
    expect(got?.meta).toEqual(file);
    expect(Buffer.from(got?.bytes ?? [])).toEqual(Buffer.from(PNG));
    expect((await stat(join(dir, 'results', `${file.id}.png`))).mode & 0o777).toBe(0o600);

    const jpeg = await store.put(bytes(5), { mime: 'image/jpeg', width: 2, height: 3 });
    expect(jpeg).not.toHaveProperty('role');
    expect(await readdir(join(dir, 'results'))).toContain(`${jpeg.id}.jpg`);
    expect(store.usage()).toEqual({ files: 2, bytes: PNG.byteLength + 5 });
  });

  it('deletes a file on request', async () => {
    const store = await open();
    const file = await store.put(PNG, { mime: 'image/png', width: 1, height: 1 });
    await store.delete(file.id);
    expect(await store.get(file.id)).toBeUndefined();
    expect(await readdir(join(dir, 'results'))).toEqual([]);
    await store.delete(file.id);
  });

  it('answers undefined for a file removed or changed behind its back', async () => {
    const store = await open();
    const gone = await store.put(PNG, { mime: 'image/png', width: 1, height: 1 });
    const changed = await store.put(PNG, { mime: 'image/png', width: 1, height: 1 });
    await rm(join(dir, 'results', `${gone.id}.png`));
    await writeFile(join(dir, 'results', `${changed.id}.png`), bytes(3));
    expect(await store.get(gone.id)).toBeUndefined();
    expect(await store.get(changed.id)).toBeUndefined();
    expect(store.usage()).toEqual({ files: 0, bytes: 0 });
  });
});

describe('expiry and the disk cap', () => {
  it('refuses a file from maxAgeMs after it was stored, and sweep deletes it', async () => {
    const store = await open({ maxAgeMs: 1000 });
    const old = await store.put(PNG, { mime: 'image/png', width: 1, height: 1 });
    clock += 500;
    const young = await store.put(PNG, { mime: 'image/png', width: 1, height: 1 });
    clock += 499;
    expect(await store.get(old.id)).toBeDefined();
    clock += 1;
    expect(await store.get(old.id)).toBeUndefined();
    expect(await readdir(join(dir, 'results'))).toEqual([`${young.id}.png`]);

    clock += 500;
    await store.sweep();
    expect(await readdir(join(dir, 'results'))).toEqual([]);
    expect(store.usage()).toEqual({ files: 0, bytes: 0 });
  });

  it('deletes the oldest files first when the total exceeds maxTotalBytes', async () => {
    const store = await open({ maxTotalBytes: 100 });
    const first = await store.put(bytes(40, 1), { mime: 'image/png', width: 1, height: 1 });
    const second = await store.put(bytes(40, 2), { mime: 'image/png', width: 1, height: 1 });
    expect(store.usage()).toEqual({ files: 2, bytes: 80 });
    const third = await store.put(bytes(40, 3), { mime: 'image/png', width: 1, height: 1 });
    expect(store.usage()).toEqual({ files: 2, bytes: 80 });
    expect(await store.get(first.id)).toBeUndefined();
    expect((await store.get(second.id))?.bytes[0]).toBe(2);
    expect((await store.get(third.id))?.bytes[0]).toBe(3);
    expect((await readdir(join(dir, 'results'))).sort()).toEqual([`${second.id}.png`, `${third.id}.png`].sort());

    const big = await store.put(bytes(100, 4), { mime: 'image/png', width: 1, height: 1 });
    expect(await readdir(join(dir, 'results'))).toEqual([`${big.id}.png`]);
    await expect(store.put(bytes(101), { mime: 'image/png', width: 1, height: 1 })).rejects.toSatisfy(
      (e: unknown) => e instanceof P2pzError && e.code === 'E_PAYLOAD_TOO_LARGE',
    );
    expect(store.usage()).toEqual({ files: 1, bytes: 100 });
  });

  it('sweeps on an unref\'d timer', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const store = await open({ maxAgeMs: 1000, sweepIntervalMs: 60_000 });
    await store.put(PNG, { mime: 'image/png', width: 1, height: 1 });
    clock += 1000;
    expect(store.usage().files).toBe(1);
    await vi.advanceTimersByTimeAsync(60_000);
    await vi.waitFor(async () => expect(await readdir(join(dir, 'results'))).toEqual([]));
    expect(store.usage().files).toBe(0);
  });

  it('logs a failed background sweep and keeps going', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const lines: string[] = [];
    const folder = join(dir, 'doomed');
    await open({ sweepIntervalMs: 1000, log: createLogger({ sink: (line) => lines.push(line) }) }, folder);
    await rm(folder, { recursive: true });
    await vi.advanceTimersByTimeAsync(1000);
    await vi.waitFor(() => expect(lines.some((l) => l.includes('store.sweep-failed error=ENOENT'))).toBe(true));
    expect(lines.join('\n')).not.toContain(dir);
  });
});

describe('ids from clients', () => {
  const hostile = [
    '../x',
    '..',
    '%2e%2e',
    '%2e%2e%2fresults',
    '..%2F..%2Fetc%2Fpasswd',
    '/etc/passwd',
    'C:\\Windows\\win.ini',
    '',
    'A'.repeat(21),
    'A'.repeat(23),
    'A'.repeat(4096),
    `${'A'.repeat(21)}A\n`,
    `${'A'.repeat(21)}\0A`,
    `${'A'.repeat(18)}.png`,
  ];

  it.each(hostile)('refuses %j without touching the file system', async (id) => {
    const store = await open();
    const file = await store.put(PNG, { mime: 'image/png', width: 1, height: 1 });
    const before = fsCallCount();
    expect(await store.get(id)).toBeUndefined();
    await store.delete(id);
    expect(fsCallCount()).toBe(before);
    // The wrapped fs does see the store's calls: a real id is read from disk.
    expect(await store.get(file.id)).toBeDefined();
    expect(fsCallCount()).toBeGreaterThan(before);
  });

  it('refuses a well-formed id it never issued without touching the file system', async () => {
    const store = await open();
    const before = fsCallCount();
    expect(await store.get(newId())).toBeUndefined();
    expect(fsCallCount()).toBe(before);
  });
});
