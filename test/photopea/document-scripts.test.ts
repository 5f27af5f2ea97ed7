// The plugin's Photopea steps (plugin/photopea/document.ts through the real channel) run in the models
// of Photopea's interpreter and document (photopea-interpreter.ts, photopea-document.ts: acorn, no
// function expressions, no finally, `==` on layers, UnitValue bounds, selections, Smart Objects placed
// by DPI, no "done" after a throw), with results encoded by the daemon's own PNG encoder.
import { describe, expect, it } from 'vitest';
import { encodePng } from '../../daemon/image/encode.js';
import { PhotopeaChannel } from '../../plugin/photopea/channel.js';
import { exportActiveLayer, pasteLayer, readActiveLayer } from '../../plugin/photopea/document.js';
import { photopeaScript } from '../../plugin/photopea/script.js';
import { PHOTOPEA_ORIGIN } from '../../shared/protocol/index.js';
import { artLayer, layerRect, layerSet, PhotopeaDocumentModel } from './photopea-document.js';
import { nodePhotopea } from './node-photopea.js';

/** Background, a group holding a hidden sketch and the photo (active), a label on top. */
function documentModel(resolution = 72): PhotopeaDocumentModel<null> {
  const model = new PhotopeaDocumentModel<null>(200, 150, resolution);
  const photo = artLayer<null>('Photo', 40, 30, 96, 64, null);
  model.layers.push(
    artLayer('Label', 100, 20, 60, 30, null),
    layerSet('Group', [artLayer('Sketch', 0, 0, 50, 50, null, false), photo, artLayer('Shadow', 44, 34, 96, 64, null)]),
    artLayer('Background', 0, 0, 200, 150, null),
  );
  model.active = photo;
  return model;
}

function setup(model = documentModel(), timeoutMs = 5_000) {
  const photopea = nodePhotopea(model);
  const channel = new PhotopeaChannel(photopea.parent, photopea.self, PHOTOPEA_ORIGIN, timeoutMs);
  return { model, photopea, channel };
}

async function resultUrl(width: number, height: number): Promise<string> {
  const rgb = new Uint8Array(width * height * 3).fill(128);
  const png = await encodePng({ width, height, rgb });
  return `data:image/png;base64,${Buffer.from(png).toString('base64')}`;
}

describe('Photopea steps in the interpreter model', () => {
  it('reads the active layer’s name and bounds', async () => {
    const { channel, photopea } = setup();
    await expect(readActiveLayer(channel)).resolves.toEqual({ name: 'Photo', rect: { left: 40, top: 30, width: 96, height: 64 } });
    expect(photopea.errors).toEqual([]);
  });

  it('asks to deselect first while a selection exists (its bounds would stand for the layer’s)', async () => {
    for (const noSelection of ['undefined', 'throws'] as const) {
      const model = documentModel();
      model.noSelection = noSelection;
      const { channel } = setup(model);
      await expect(readActiveLayer(channel)).resolves.toMatchObject({ name: 'Photo' });
      model.selection = { left: 0, top: 0, right: 10, bottom: 10 };
      await expect(readActiveLayer(channel)).rejects.toThrow(/Deselect/);
    }
  });

  it('exports only the active layer (inside its group) and restores every visibility it changed', async () => {
    const { channel, model, photopea } = setup();
    const before = model.all().map((l) => [l.name, l.visible]);
    const png = await exportActiveLayer(channel);
    expect(JSON.parse(new TextDecoder().decode(png))).toEqual(['Photo']);
    expect(photopea.exports).toEqual([['Photo']]);
    expect(model.all().map((l) => [l.name, l.visible])).toEqual(before);
    expect(photopea.errors).toEqual([]);
  });

  for (const resolution of [72, 300]) {
    it(`pastes a result at the layer’s position and own size in a ${resolution}-dpi document`, async () => {
      const { channel, model, photopea } = setup(documentModel(resolution));
      const bounds = await pasteLayer(channel, { url: await resultUrl(96, 64), left: 40, top: 30, width: 96, height: 64, name: 'cat → dog (seed 42)', visible: true });
      expect(bounds).toEqual([40, 30, 136, 94]);
      const placed = model.active;
      expect(placed).toMatchObject({ name: 'cat → dog (seed 42)', smart: true, visible: true });
      expect(placed === null ? null : layerRect(placed)).toEqual({ left: 40, top: 30, right: 136, bottom: 94 });
      // Above the photo, inside its group.
      expect(model.all().map((l) => l.name)).toEqual(['Label', 'Group', 'Sketch', 'cat → dog (seed 42)', 'Photo', 'Shadow', 'Background']);
      expect(photopea.errors).toEqual([]);
      expect(model.misuses).toEqual([]);
      // Photopea placed the Smart Object at the result's own size where the document has 72 dpi
      // (the PNG has no pHYs), and scaled by 300/72 where it has 300; the paste resized it back.
      const placedSize = resolution === 72 ? [96, 64] : [400, 267];
      expect(photopea.echoes.some((e) => e.includes(`"placedSize":${JSON.stringify(placedSize)}`))).toBe(true);
    });
  }

  it('pastes a result the daemon scaled down (half the size) at the layer’s full size', async () => {
    const { channel, model, photopea } = setup();
    const bounds = await pasteLayer(channel, { url: await resultUrl(48, 32), left: 40, top: 30, width: 96, height: 64, name: 'scaled', visible: true });
    expect(bounds).toEqual([40, 30, 136, 94]);
    expect(photopea.echoes.some((e) => e.includes('"placedSize":[48,32]'))).toBe(true);
    expect(model.active === null ? null : layerRect(model.active)).toEqual({ left: 40, top: 30, right: 136, bottom: 94 });
    expect(photopea.errors).toEqual([]);
  });

  it('does not paste while a selection exists', async () => {
    const model = documentModel();
    model.selection = { left: 0, top: 0, right: 10, bottom: 10 };
    const { channel } = setup(model);
    await expect(pasteLayer(channel, { url: await resultUrl(96, 64), left: 40, top: 30, width: 96, height: 64, name: 'x', visible: true })).rejects.toThrow(/Deselect/);
    expect(model.all().map((l) => l.name)).not.toContain('x');
    expect(model.misuses).toEqual([]);
  });

  it('reports a script that throws in Photopea as failed at once, with its error', async () => {
    const { channel } = setup(documentModel(), 10_000);
    const started = Date.now();
    await expect(channel.run(photopeaScript`app.activeDocument.nothing.here = 1;`)).rejects.toThrow(/Photopea could not run a step: TypeError/);
    expect(Date.now() - started).toBeLessThan(5_000);
    // The channel goes on with the next script.
    await expect(channel.run(photopeaScript`app.echoToOE(${'next'});`)).resolves.toMatchObject({ strings: ['next'] });
  });

  it('reports a script that got no "done" at all as stopped by Photopea, not as unanswered', async () => {
    const { channel } = setup(documentModel(), 500);
    // `let` is beyond the model: the run ends without "done", as a throw outside any catch does.
    await expect(channel.run(photopeaScript`let x = 1;`)).rejects.toThrow(/Photopea stopped the step/);
    await expect(channel.run(photopeaScript`app.echoToOE(${'next'});`)).resolves.toMatchObject({ strings: ['next'] });
  });
});
