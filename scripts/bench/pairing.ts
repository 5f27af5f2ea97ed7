// `npm run bench pairing [-- --seconds N --loops N]`: how fast a guesser can have pairing codes
// compared (docs/SECURITY.md §Pairing). A spawned `p2pz serve` holds a code; N keep-alive loops post
// random well-formed codes to POST /v1/pair as the origin `null` (a page's, and the Figma plugin's)
// for the given time. Every guess is compared (the right code is checked before any budget), so the
// answers per second are the brute-force rate r, and r · 300 s / 2⁴⁰ the chance of a hit per code.
import { spawn } from 'node:child_process';
import { Agent, request } from 'node:http';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PAIRING_CODE } from '../../shared/protocol/index.js';
import { machineLine } from './machine.js';

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1] ?? fallback) : fallback;
};
const seconds = arg('--seconds', 10);
const loops = arg('--loops', 16);
const ROOT = join(import.meta.dirname, '../..');

const home = await mkdtemp(join(tmpdir(), 'p2pz-bench-pairing-'));
const child = spawn(process.execPath, [join(ROOT, 'bin/p2pz.js'), 'serve', '--port', '0', '--device', 'cpu'], {
  env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '', P2PZ_HOME: home },
  stdio: ['ignore', 'ignore', 'ignore'],
});
try {
  let url = '';
  for (let i = 0; i < 600 && url === ''; i += 1) {
    url = await readFile(join(home, 'daemon.json'), 'utf8').then((t) => (JSON.parse(t) as { url: string }).url, () => '');
    if (url === '') await new Promise((r) => setTimeout(r, 50));
  }
  const agent = new Agent({ keepAlive: true, maxSockets: loops });
  const counts = new Map<number, number>();
  const guess = (): string => Array.from({ length: PAIRING_CODE.length }, () => PAIRING_CODE.alphabet[Math.floor(Math.random() * 32)]).join('');
  const post = (): Promise<number> =>
    new Promise((resolve, reject) => {
      const body = JSON.stringify({ v: 1, code: guess() });
      const req = request(`${url}/v1/pair`, { method: 'POST', agent, headers: { Origin: 'null', 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end(body);
    });
  const end = performance.now() + seconds * 1000;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: loops }, async () => {
      while (performance.now() < end) {
        const status = await post();
        counts.set(status, (counts.get(status) ?? 0) + 1);
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  agent.destroy();
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  const rate = total / elapsed;
  const space = PAIRING_CODE.alphabet.length ** PAIRING_CODE.length;
  const perCode = (rate * 300) / space;
  console.log(
    [
      '### Pairing: guesses the daemon compares per second',
      '',
      `\`npm run bench pairing -- --seconds ${seconds} --loops ${loops}\` (${machineLine()}): ${loops} keep-alive loops posting random`,
      `well-formed codes as the origin \`null\`.`,
      '',
      '| answers | per second | by status | P(hit) per code (300 s) | codes until a hit is expected |',
      '|---:|---:|---|---:|---:|',
      `| ${total} in ${elapsed.toFixed(1)} s | ${rate.toFixed(0)} | ${[...counts].map(([s, n]) => `${s}: ${n}`).join(', ')} | ${perCode.toExponential(1)} | ${(1 / perCode).toExponential(1)} |`,
    ].join('\n'),
  );
} finally {
  child.kill('SIGKILL');
  await rm(home, { recursive: true, force: true });
}
