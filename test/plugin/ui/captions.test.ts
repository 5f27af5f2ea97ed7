// The panel's caption requests, driven through a real Connection by the scripted DaemonClient: a
// caption job per chosen image (uploaded once, shared with the job runner's renders), the answer
// remembered by image bytes, E_MODEL_MISSING read as "the template", an expired upload sent again, and a
// newer question that cancels the older job and drops its late reply.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { EditParams, PROTOCOL_VERSION, P2pzError, type ImageBytes } from '../../../shared/protocol/index.js';
import { CaptionRequests, type CaptionAnswer } from '../../../plugin/ui/captions.js';
import { JobRunner } from '../../../plugin/ui/job-runner.js';
import { Uploads } from '../../../plugin/ui/uploads.js';
import { connectionRig, unhandledRejectionsDuring, type ConnectionRig } from './connection-rig.js';
import type { FakeDaemonClient } from './fake-daemon-client.js';

function image(nodeId: string, fill = 1): ImageBytes {
  return { nodeId, bytes: new Uint8Array([137, 80, 78, 71, fill, fill]), mime: 'image/png', read: 'image-fill' };
}

let conn: ConnectionRig;
let client: FakeDaemonClient;
let images: ImageBytes[];
let uploads: Uploads;
let captions: CaptionRequests;

beforeEach(async () => {
  conn = connectionRig();
  await conn.connection.start(7777, 'tok_1');
  client = conn.client();
  client.stream.welcome();
  images = [image('1:1'), image('2:2', 2)];
  uploads = new Uploads();
  captions = new CaptionRequests(conn.connection, { readImages: async (ids) => images.filter((i) => ids.includes(i.nodeId)) }, uploads);
});

afterEach(() => conn.connection.stop());

async function submitted(n: number): Promise<string> {
  await vi.waitFor(() => expect(client.submitted).toHaveLength(n));
  return client.lastJobId;
}

function finishCaption(jobId: string, caption: string): void {
  client.stream.emit({
    v: PROTOCOL_VERSION, type: 'finished', jobId, kind: 'caption',
    outcome: { results: [], engine: 'captioner', timings: { total: 40 }, device: 'cpu', details: { caption, captionOrigin: 'captioner', captioner: 'tiny-blip', notes: [] } },
  });
}

describe('CaptionRequests', () => {
  it('submits a caption job for the chosen image and answers the captioner\'s caption; the same bytes again answer at once', async () => {
    const asked = captions.ask('1:1');
    const jobId = await submitted(1);
    expect(client.submitted[0]).toEqual({ jobId, kind: 'caption', imageId: client.uploads[0]?.imageId });
    finishCaption(jobId, 'a dog sitting on a bench');
    expect(await asked).toEqual({ origin: 'captioner', caption: 'a dog sitting on a bench', captioner: 'tiny-blip' });
    // The same bytes under another layer id (Photopea names each selection anew): no job, no upload.
    images.push({ ...image('3:3'), bytes: images[0]!.bytes });
    expect(await captions.ask('3:3')).toEqual({ origin: 'captioner', caption: 'a dog sitting on a bench', captioner: 'tiny-blip' });
    expect(client.submitted).toHaveLength(1);
    expect(client.uploads).toHaveLength(1);
  });

  it('reads E_MODEL_MISSING as the template, with the daemon\'s words, and does not remember it', async () => {
    const asked = captions.ask('1:1');
    const jobId = await submitted(1);
    const error = P2pzError.fromBody({ code: 'E_MODEL_MISSING', message: 'No captioner is installed, so previews and renders use the template caption ("a photo of a …") unless you write one.', hint: 'Install one.' }).toBody();
    client.stream.emit({ v: PROTOCOL_VERSION, type: 'error', jobId, kind: 'caption', error });
    expect(await asked).toEqual({ origin: 'template', why: error.message });
    const again = captions.ask('1:1');
    await submitted(2);
    client.stream.emit({ v: PROTOCOL_VERSION, type: 'error', jobId: client.lastJobId, kind: 'caption', error });
    expect((await again)?.origin).toBe('template');
  });

  it('an error event that arrives before the submit is answered is the answer, not an unhandled rejection', async () => {
    const error = P2pzError.fromBody({ code: 'E_MODEL_MISSING', message: 'No captioner is installed.', hint: 'Install one.' }).toBody();
    client.beforeSubmitAnswer = (job) => client.stream.emit({ v: PROTOCOL_VERSION, type: 'error', jobId: job.jobId, kind: 'caption', error });
    const unhandled = await unhandledRejectionsDuring(async () => {
      expect(await captions.ask('1:1')).toEqual({ origin: 'template', why: error.message });
    });
    expect(unhandled).toEqual([]);
  });

  it('a newer question cancels the older caption job, and the older one answers null even when its reply comes late', async () => {
    const first = captions.ask('1:1');
    const firstJob = await submitted(1);
    const second = captions.ask('2:2');
    const secondJob = await submitted(2);
    expect(client.stream.sent).toContainEqual({ v: PROTOCOL_VERSION, type: 'cancel', jobId: firstJob });
    finishCaption(firstJob, 'a late reply for the first image');
    finishCaption(secondJob, 'a cat on a sofa');
    expect(await first).toBeNull();
    expect(await second).toEqual({ origin: 'captioner', caption: 'a cat on a sofa', captioner: 'tiny-blip' });
  });

  it('an upload the daemon forgot is sent again; the render of the same layer reuses the caption\'s upload', async () => {
    const asked = captions.ask('1:1');
    finishCaption(await submitted(1), 'a bird');
    await asked;
    client.knownImages.clear();
    images[0] = image('1:1', 9);
    const again = captions.ask('1:1');
    await submitted(2);
    expect(client.uploads).toHaveLength(2);
    finishCaption(client.lastJobId, 'a fish');
    expect((await again) as CaptionAnswer).toMatchObject({ caption: 'a fish' });

    // The job runner given the same Uploads sends the render on the caption's upload.
    const runner = new JobRunner(conn.connection, { readImages: async (ids) => images.filter((i) => ids.includes(i.nodeId)) }, {
      started: () => undefined, progress: () => undefined, previewFrame: () => undefined, results: () => undefined, cancelled: () => undefined, failed: () => undefined, ended: () => undefined,
    }, undefined, uploads);
    const running = runner.run('render', ['1:1'], EditParams.parse({ source: 'cat', target: 'dog' }));
    const renderJob = await submitted(3);
    expect(client.submitted[2]).toMatchObject({ kind: 'render', imageId: client.uploads[1]?.imageId });
    expect(client.uploads).toHaveLength(2);
    client.stream.emit({ v: PROTOCOL_VERSION, type: 'finished', jobId: renderJob, kind: 'render', outcome: client.outcome('diffusion') });
    await running;
  });
});
