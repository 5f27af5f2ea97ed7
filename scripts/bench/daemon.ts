// `npm run bench daemon [-- --runs N] [-- --gap MS]`: what the service adds to a preview job. A 512×512 PNG goes the
// whole way (upload, sniff, queue, worker IPC, decode, run, preview frame over the WebSocket, decoded
// by the plugin's decoder; then encode, store, `finished` event, download of the PNG) through a real
// daemon on 127.0.0.1 with the generated image-to-image generator installed as the cat → dog GAN
// preview, against calling the same model's onnxruntime session directly with the same session
// options. Reported as medians, their ratio and the absolute overhead, to the frame (what the designer
// waits for) in three flows: a new image with its upload timed; the designer's flow, where the panel
// uploads the layer when it is chosen and the preview is asked for `--gap` ms later (timed from that
// request); and the same upload previewed again. Also to the downloaded PNG (what Apply places).
import { writeTinyImg2Img } from '../../daemon/onnx/tiny/img2img.js';
import { fastestOverhead, pairedCells, pairedTimes, phaseTimings, photoLikePng, stageTimings, WARMUP_RUNS, withPreviewDaemon } from './lib/preview-service.js';
import { machineLine } from './machine.js';

const flag = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) || fallback : fallback;
};
const runs = flag('--runs', 15);
/** Idle time between choosing the layer (its upload) and asking for the preview: a designer takes
 *  longer to pick an edit; a short gap is the strict case. */
const gapMs = flag('--gap', 300);
const SIZE = 512;

async function measure(channels: number, png: Uint8Array): Promise<string> {
  return withPreviewDaemon(SIZE, (path) => writeTinyImg2Img(path, { seed: 1, channels }), async (daemon) => {
    const times = await pairedTimes(daemon.generatorPath, SIZE, daemon, png, runs, true, gapMs);
    const toPng = pairedCells(times, 1).split(' | ');
    const chosenTimes = { ...times, direct: times.chosenDirect, frame: times.chosenFrame };
    const againTimes = { ...times, direct: times.againDirect, frame: times.againFrame };
    const chosen = pairedCells(chosenTimes, 1, 'frame').split(' | ');
    const again = pairedCells(againTimes, 1, 'frame').split(' | ');
    const fastest = [times, chosenTimes, againTimes].map((t) => fastestOverhead(t, 'frame', 1)).join(' / ');
    return `| ${channels} | ${pairedCells(times, 1, 'frame')} | ${chosen[0]} | ${chosen[1]} | ${chosen[2]} | ${chosen[3]} | ${again[3]} | ${fastest} | ${toPng[1]} | ${toPng[3]} | ${phaseTimings(times)} | new: ${stageTimings(times.outcome)}; chosen: ${times.chosenOutcome ? stageTimings(times.chosenOutcome) : '–'} |`;
  });
}

const png = await photoLikePng(SIZE);
const rows = [];
for (const channels of [16, 64]) rows.push(await measure(channels, png));
console.log(`## daemon: service overhead on a 512×512 preview

Machine: ${machineLine()}. Command: \`npm run bench daemon -- --runs ${runs} --gap ${gapMs}\` (medians of ${runs} runs after ${WARMUP_RUNS} warm-ups,
direct and service runs alternating; overhead = median of the per-round differences). Each round uploads another
photo-like PNG and previews it ("new image", timed from the upload's start); then uploads one more, waits ${gapMs} ms
(the layer chosen, the edit not yet) and previews it ("layer chosen → edit chosen", timed from the preview request);
"same upload again" previews the first upload once more without uploading it.

| generator channels | session.run() ms | new image: to the frame ms | ratio of medians | overhead ms | session.run() ms (chosen) | layer chosen → edit chosen: to the frame ms | ratio of medians | overhead ms | overhead, same upload again ms | fastest round's overhead ms (new / chosen / again) | new image: to the downloaded PNG ms | its overhead ms | client phases, new image (ms, medians) | worker stages (ms, last run) |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
${rows.join('\n')}
`);
