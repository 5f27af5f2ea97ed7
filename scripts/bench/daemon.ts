// `npm run bench daemon [-- --runs N]`: what the service adds to a preview job. A 512×512 PNG goes the
// whole way (upload, sniff, queue, worker IPC, decode, run, preview frame over the WebSocket, decoded
// by the plugin's decoder; then encode, store, `finished` event, download of the PNG) through a real
// daemon on 127.0.0.1 with the generated image-to-image generator installed as the cat → dog GAN
// preview, against calling the same model's onnxruntime session directly with the same session
// options. Reported as medians, their ratio and the absolute overhead, to the frame (what the designer
// waits for; for a new image and for the same upload again) and to the downloaded PNG (what Apply places).
import { writeTinyImg2Img } from '../../daemon/onnx/tiny/img2img.js';
import { fastestOverhead, pairedCells, pairedTimes, phaseTimings, photoLikePng, stageTimings, WARMUP_RUNS, withPreviewDaemon } from './lib/preview-service.js';
import { machineLine } from './machine.js';

const runs = Number(process.argv[process.argv.indexOf('--runs') + 1]) || 15;
const SIZE = 512;

async function measure(channels: number, png: Uint8Array): Promise<string> {
  return withPreviewDaemon(SIZE, (path) => writeTinyImg2Img(path, { seed: 1, channels }), async (daemon) => {
    const times = await pairedTimes(daemon.generatorPath, SIZE, daemon, png, runs, true);
    const toPng = pairedCells(times, 1).split(' | ');
    const again = pairedCells({ ...times, direct: times.againDirect, frame: times.againFrame }, 1, 'frame').split(' | ');
    const againTimes = { ...times, direct: times.againDirect, frame: times.againFrame };
    const fastest = `${fastestOverhead(times, 'frame', 1)} / ${fastestOverhead(againTimes, 'frame', 1)}`;
    return `| ${channels} | ${pairedCells(times, 1, 'frame')} | ${again[3]} | ${fastest} | ${toPng[1]} | ${toPng[3]} | ${phaseTimings(times)} | ${stageTimings(times.outcome)} |`;
  });
}

const png = await photoLikePng(SIZE);
const rows = [];
for (const channels of [16, 64]) rows.push(await measure(channels, png));
console.log(`## daemon: service overhead on a 512×512 preview

Machine: ${machineLine()}. Command: \`npm run bench daemon -- --runs ${runs}\` (medians of ${runs} runs after ${WARMUP_RUNS} warm-ups,
direct and service runs alternating; overhead = median of the per-round differences). Each round uploads another
photo-like PNG; "same upload again" previews that upload once more without uploading it (as the panel does
for a layer it has sent), the worker finding it decoded.

| generator channels | session.run() ms | to the preview frame ms | ratio of medians | overhead ms | overhead, same upload again ms | fastest round's overhead ms (new / again) | to the downloaded PNG ms | its overhead ms | client phases (ms, medians) | worker stages (ms, last run) |
|---|---|---|---|---|---|---|---|---|---|---|
${rows.join('\n')}
`);
