// `npm run bench memory [-- --bin PATH --label TEXT]`: the daemon's resident memory under the burst
// of docs/SECURITY.md §Memory bound. A spawned `p2pz serve` (PATH: another checkout's bin/p2pz.js, to
// measure an older version the same way) with the tiny Stable Diffusion model runs a long render; a
// 49 MiB upload (a valid PNG header, then junk) arrives; 50 concurrent submissions of it follow, then
// 50 more under other client ids. The daemon process's RSS is read from /proc every 10 ms (Linux).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodePng } from '../../daemon/image/encode.js';
import { crc32 } from '../../daemon/image/sniff.js';
import { writeTinyStableDiffusion } from '../../daemon/onnx/tiny/stable-diffusion.js';
import { machineLine } from './machine.js';

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(name);
  return i > 0 ? (process.argv[i + 1] ?? fallback) : fallback;
};
const ROOT = join(import.meta.dirname, '../..');
const bin = arg('--bin', join(ROOT, 'bin/p2pz.js'));
const label = arg('--label', 'this checkout');
const MiB = 1024 * 1024;

function rssOf(pid: number): number {
  // Synchronous on purpose: sampling must not wait behind the burst's own promises.
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

const home = await mkdtemp(join(tmpdir(), 'p2pz-bench-memory-'));
await writeTinyStableDiffusion(join(home, 'models', 'tiny-sd'));
const child = spawn(process.execPath, [bin, 'serve', '--port', '0', '--device', 'cpu'], {
  env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '', P2PZ_HOME: home },
  stdio: ['ignore', 'ignore', process.env['P2PZ_BENCH_LOG'] ? 'inherit' : 'ignore'],
});
try {
  let url = '';
  for (let i = 0; i < 600 && url === ''; i += 1) {
    url = await readFile(join(home, 'daemon.json'), 'utf8').then((t) => (JSON.parse(t) as { url: string }).url, () => '');
    if (url === '') await new Promise((r) => setTimeout(r, 50));
  }
  const cli = (await readFile(join(home, 'token'), 'utf8')).trim();
  const post = (path: string, token: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> =>
    fetch(`${url}${path}`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const { code } = (await (await post('/v1/pairing-code', cli, { v: 1 })).json()) as { code: string };
  const { token } = (await (await fetch(`${url}/v1/pair`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ v: 1, code }) })).json()) as { token: string };
  // node:http rather than fetch: an early answer (413, 429) is read instead of failing with EPIPE.
  const upload = (bytes: Uint8Array): Promise<string> =>
    new Promise((resolve, reject) => {
      const req = request(`${url}/v1/images`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'image/png', 'Content-Length': bytes.byteLength } }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => (res.statusCode === 201 ? resolve((JSON.parse(text) as { imageId: string }).imageId) : reject(new Error(`upload: ${res.statusCode} ${text}`))));
      });
      req.on('error', () => undefined);
      req.end(bytes);
    });
  const job = (imageId: string, jobId: string) => ({ v: 1, kind: 'render', model: 'tiny-sd', imageId, jobId, edit: { source: 'cat', target: 'dog', steps: 200, size: 256 } });

  await new Promise((r) => setTimeout(r, 1000));
  const idle = rssOf(child.pid ?? 0);
  const rgb = new Uint8Array(256 * 256 * 3).map((_, i) => (i * 37) & 255);
  await post('/v1/jobs', token, job(await upload(await encodePng({ width: 256, height: 256, rgb })), 'long-render'));
  for (let i = 0; i < 200; i += 1) {
    const state = (await (await fetch(`${url}/v1/jobs/long-render`, { headers: { Authorization: `Bearer ${token}` } })).json()) as { job: { state: string } };
    if (state.job.state === 'running') break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const big = new Uint8Array(49 * MiB).fill(0x5a);
  // A 1×1 PNG's signature and IHDR, claiming 4000×3000: the sniffer accepts it, the decoder would not.
  const header = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC', 'base64');
  header.writeUInt32BE(4000, 16);
  header.writeUInt32BE(3000, 20);
  header.writeUInt32BE(crc32(header.subarray(12, 29)), 29);
  big.set(header.subarray(0, 33));
  const bigId = await upload(big);
  const afterUpload = rssOf(child.pid ?? 0);

  const burst = async (prefix: string, clientIds: boolean): Promise<{ peak: number; statuses: Map<number, number> }> => {
    let peak = rssOf(child.pid ?? 0);
    const timer = setInterval(() => {
      peak = Math.max(peak, rssOf(child.pid ?? 0));
    }, 10);
    const replies = await Promise.all(
      Array.from({ length: 50 }, (_, i) => post('/v1/jobs', token, job(bigId, `${prefix}-${i}`), clientIds ? { 'x-p2pz-client': `other-client-${i}` } : {})),
    );
    await new Promise((r) => setTimeout(r, 200));
    clearInterval(timer);
    const statuses = new Map<number, number>();
    for (const r of replies) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    return { peak: Math.max(peak, rssOf(child.pid ?? 0)), statuses };
  };
  const first = await burst('burst-a', false);
  const second = await burst('burst-b', true);
  const m = (bytes: number): string => String(Math.round(bytes / MiB));
  const counts = (s: Map<number, number>): string => [...s].sort().map(([status, n]) => `${n}×${status}`).join(' ');
  console.log(
    `| ${label} | ${m(idle)} | ${m(afterUpload)} | ${m(first.peak)} (${counts(first.statuses)}) | ${m(second.peak)} (${counts(second.statuses)}) |`,
  );
  console.error(`machine: ${machineLine()}`);
} finally {
  child.kill('SIGKILL');
  await rm(home, { recursive: true, force: true });
}
