// `npm run bench regularization [--latent N] [--runs N]`: time of one `regularizeNoise` call (the noise
// regularization of one DDIM inversion step: 5 outer × (5 L_ac gradient steps + 1 L_kl step) with
// the paper's defaults) on a [1,4,N,N] latent, median over runs after a warm-up that lets V8 optimise,
// as wall time and as the process's CPU time (user + system; on a shared machine the CPU time is the
// steadier of the two, the work being single-threaded).
// Also prints a checksum of the result, so that a change to the code that alters the numbers beyond
// float rounding shows up next to its speed. Prints a Markdown section for docs/BENCHMARKS.md.
import { parseArgs } from 'node:util';
import { Rng } from '../../daemon/pipeline/random.js';
import { regularizeNoise } from '../../daemon/pipeline/regularization.js';
import { machineLine, median } from './machine.js';

const { values } = parseArgs({
  options: {
    latent: { type: 'string', default: '64' },
    runs: { type: 'string', default: '100' },
  },
});
const n = Number(values.latent);
const runs = Number(values.runs);
const dims = [1, 4, n, n];
const source = new Rng(7);
const data = Float32Array.from({ length: 4 * n * n }, () => source.normal());

const times: number[] = [];
const cpuTimes: number[] = [];
let checksum = 0;
for (let r = 0; r < runs + 5; r++) {
  const rng = new Rng(r);
  const cpu = process.cpuUsage();
  const t = performance.now();
  const { eps } = regularizeNoise({ data, dims }, {}, rng);
  const ms = performance.now() - t;
  const used = process.cpuUsage(cpu);
  if (r >= 5) {
    times.push(ms);
    cpuTimes.push((used.user + used.system) / 1000);
  }
  if (r === 0) for (let i = 0; i < eps.data.length; i++) checksum += eps.data[i]! * ((i % 7) + 1);
}
const lines = [
  `### regularizeNoise ([1,4,${n},${n}] latent, paper defaults: 5 outer × (5 L_ac + 1 L_kl) steps)`,
  '',
  `Machine: ${machineLine()}. Command: \`npm run bench regularization -- --latent ${n} --runs ${runs}\``,
  '',
  `| measure | value |`,
  `|---|---|`,
  `| one call (one inversion step), median of ${runs} | ${median(times).toFixed(2)} ms |`,
  `| CPU time of one call, median | ${median(cpuTimes).toFixed(2)} ms |`,
  `| fastest call | ${Math.min(...times).toFixed(2)} ms |`,
  `| checksum of the first call's result | ${checksum.toFixed(6)} |`,
  '',
];
process.stdout.write(`${lines.join('\n')}\n`);
