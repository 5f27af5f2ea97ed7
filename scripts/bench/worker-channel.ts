// `npm run bench worker-channel [-- --rounds N]`: what carrying an upload's bytes in a `run` message
// costs on the worker channel, against naming an upload the worker holds (daemon/worker/held-uploads.ts).
// A child forked as the supervisor forks the worker (Node IPC, `serialization: 'advanced'`) answers
// each message at once. Times one message there and its answer back, medians of N rounds per size,
// the two kinds of message alternated. Encoded uploads: a 512² photo's PNG is about 0.5 MiB, a 4 MP
// layer's 4–12 MiB.
import { fork } from 'node:child_process';
import { parseArgs } from 'node:util';
import { machineLine, median } from './machine.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '21' }, child: { type: 'boolean', default: false } } });

if (values.child) {
  process.on('message', (m: { type: string; image?: Uint8Array }) => process.send?.({ type: 'ack', bytes: m.image?.byteLength ?? 0 }));
} else {
  const child = fork(process.argv[1] ?? '', ['--child'], { serialization: 'advanced' });
  const roundTrip = (message: object): Promise<number> => new Promise((resolve) => {
    const start = performance.now();
    child.once('message', () => resolve(performance.now() - start));
    child.send(message);
  });
  const base = { v: 1, type: 'run', jobId: 'bench_job_0001', kind: 'preview', modelsDir: '/models', stepPreviews: false, edit: { source: 'cat', target: 'dog' } };
  const rows: string[] = [];
  for (const mib of [0.5, 4, 12]) {
    // Bytes of no simple pattern (an encoded image's are not compressible either).
    const image = new Uint8Array(mib * 2 ** 20).map((_, i) => (i * 2654435761) >>> 24);
    const carried: number[] = [];
    const named: number[] = [];
    for (let k = 0; k < Number(values.rounds); k++) {
      carried.push(await roundTrip({ ...base, image }));
      named.push(await roundTrip({ ...base, uploadId: 'img_bench_0001' }));
    }
    rows.push(`| ${mib} MiB | ${median(carried).toFixed(2)} | ${median(named).toFixed(2)} |`);
  }
  child.kill();
  console.log(`## worker-channel: a run message with the upload's bytes, or with its id

Machine: ${machineLine()}. Command: \`npm run bench worker-channel -- --rounds ${values.rounds}\`.
Round trip of one message to a forked child and its answer, medians of ${values.rounds} rounds.

| upload | with its bytes, ms | with its id, ms |
|---|---:|---:|
${rows.join('\n')}
`);
}
