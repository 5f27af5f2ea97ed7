// The model of Photopea's script interpreter (photopea-interpreter.ts) and document
// (photopea-document.ts) behaves as Photopea does, one pinned case per behaviour its headers cite:
// these are the rules the plugin's scripts are held to in every other Photopea test.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ANCHOR_POSITION, artLayer, layerSet, PhotopeaDocumentModel } from './photopea-document.js';
import { interpretPhotopeaScript, UnitValue } from './photopea-interpreter.js';
import { answerScript } from './photopea-messaging.js';

/** Runs `source` with `out(x)` collecting values; answers what it collected and how it ended. */
function run(source: string, globals: Record<string, unknown> = {}): { out: unknown[]; error: string | null; unmodelled: boolean } {
  const out: unknown[] = [];
  const outcome = interpretPhotopeaScript(source, { out: (v: unknown) => out.push(v), ...globals });
  return { out, ...outcome };
}

function documentModel(): PhotopeaDocumentModel<null> {
  const model = new PhotopeaDocumentModel<null>(200, 150);
  const photo = artLayer<null>('Photo', 40, 30, 96, 64, null);
  model.layers.push(artLayer('Label', 100, 20, 60, 30, null), layerSet('Group', [photo]), artLayer('Background', 0, 0, 200, 150, null));
  model.active = photo;
  return model;
}

function withDocument(source: string, model = documentModel()): { out: unknown[]; error: string | null; unmodelled: boolean; model: PhotopeaDocumentModel<null> } {
  const out: unknown[] = [];
  const outcome = interpretPhotopeaScript(source, { out: (v: unknown) => out.push(v), ...model.app({ echo: (t) => out.push(t), save: () => undefined, open: () => undefined }) });
  return { out, ...outcome, model };
}

describe('Photopea interpreter model', () => {
  it('runs ordinary ES5: declarations, loops with break and continue, recursion, catch, objects and JSON', () => {
    const r = run(`
function fact(n) { if (n <= 1) return 1; return n * fact(n - 1); }
var xs = [], o = { a: 1, "b": [true, null] };
for (var i = 0; i < 10; i++) { if (i == 2) continue; if (i == 5) break; xs.push(i); }
var caught;
try { missing(); } catch (e) { caught = "caught"; }
out(fact(5)); out(xs.join(",")); out(JSON.stringify(o)); out(caught); out(typeof fact); out(i);`);
    expect(r.error).toBeNull();
    expect(r.out).toEqual([120, '0,1,3,4', '{"a":1,"b":[true,null]}', 'caught', 'function', 5]);
  });

  it('leaves a function expression undefined: calling it throws', () => {
    expect(run('var f = function () { return 1; }; out(typeof f);').out).toEqual(['undefined']);
    const r = run('var f = function () { return 1; }; f();');
    expect(r.error).toMatch(/TypeError: undefined is not a function/);
    expect(r.unmodelled).toBe(false);
  });

  it('never runs a finally block', () => {
    expect(run('var t = 0; try { t = 1; } finally { t = 2; } out(t);').out).toEqual([1]);
    expect(run('try { out("body"); } finally { out("finally"); }').out).toEqual(['body']);
  });

  it('compares layers with == by the layer underneath; !=, === and !== compare fresh wrappers', () => {
    const r = withDocument(`
var d = app.activeDocument, a = d.activeLayer;
out(d.activeLayer == a); out(d.activeLayer != a); out(d.activeLayer === a); out(d.activeLayer !== a);
out(d.layers[0] == a); out(d.layers[1].layers[0] == a);`);
    expect(r.error).toBeNull();
    expect(r.out).toEqual([true, true, false, true, false, true]);
  });

  it('gives bounds as UnitValues: .value is the number, Number() is NaN, number − UnitValue is negated', () => {
    const r = withDocument(`
var b = app.activeDocument.activeLayer.bounds;
out(b.length); out(b[0].value); out(b[3].value); out(Number(b[0])); out(100 - b[0]); out(100 - b[0].value);
out(typeof app.activeDocument.width); out(app.activeDocument.width);`);
    expect(r.error).toBeNull();
    expect(r.out).toEqual([4, 40, 94, Number.NaN, -60, 60, 'number', 200]);
  });

  it('refuses UnitValue arithmetic it does not know, and UnitValues given to JSON', () => {
    for (const expr of ['b[0] + 1', 'b[0] - 1', 'b[2] - b[0]', '2 * b[0]', 'b[0] == 40', 'JSON.stringify(b)', 'String(b[0])', '-b[0]']) {
      const r = withDocument(`var b = app.activeDocument.activeLayer.bounds; out(${expr});`);
      expect({ expr, unmodelled: r.unmodelled }).toEqual({ expr, unmodelled: true });
    }
  });

  it('answers the selection’s rectangle for layer bounds while a selection exists, and does not move the layer', () => {
    const model = documentModel();
    model.selection = { left: 10, top: 10, right: 20, bottom: 30 };
    const r = withDocument('var l = app.activeDocument.activeLayer, b = l.bounds; out([b[0].value, b[3].value]); l.translate(5, 5);', model);
    expect(r.out).toEqual([[10, 30]]);
    expect(model.misuses).toEqual(['translate of “Photo” with a selection']);
    expect(model.active).toMatchObject({ left: 40, top: 30 });
  });

  it('answers selection.bounds undefined without a selection, or throws when modelled as Photoshop does', () => {
    expect(withDocument('out(app.activeDocument.selection.bounds == undefined);').out).toEqual([true]);
    const model = documentModel();
    model.noSelection = 'throws';
    expect(withDocument('app.activeDocument.selection.bounds;', model).error).toMatch(/no selection/);
  });

  it('blanks lines that start with #', () => {
    expect(run('out(1);\n#include "lib.jsx"\n  # also\nout(2);').out).toEqual([1, 2]);
    // A # line inside a multi-line statement is blanked too, which can break the statement.
    expect(run('var s = [1,\n# 2,\n3]; out(s.length);').out).toEqual([2]);
  });

  it('answers "done" only when the script did not throw', () => {
    const model = documentModel();
    const ok = answerScript(model, 'app.echoToOE("a");', () => Promise.resolve(new ArrayBuffer(0)));
    expect(ok.messages).toEqual(['a', 'done']);
    const thrown = answerScript(model, 'app.echoToOE("a"); throw "boom"; app.echoToOE("b");', () => Promise.resolve(new ArrayBuffer(0)));
    expect(thrown.messages).toEqual(['a']);
    expect(thrown.outcome.error).toBe('boom');
    expect(answerScript(model, 'app.echoToOE(', () => Promise.resolve(new ArrayBuffer(0))).messages).toEqual([]);
  });

  it('refuses constructs it does not model instead of guessing', () => {
    for (const source of ['let x = 1;', 'const x = 1;', 'var f = () => 1;', 'var s = `t`;', 'this.x = 1;', 'var d = new Date();', 'for (var k in {}) {}', 'switch (1) {}', 'out(/x/);']) {
      expect({ source, unmodelled: run(source).unmodelled }).toEqual({ source, unmodelled: true });
    }
  });

  it('places an image in physical units: scaled by document DPI / image DPI, and resizes from the top left', () => {
    const model = new PhotopeaDocumentModel<null>(400, 300, 300);
    model.layers.push(artLayer('Background', 0, 0, 400, 300, null));
    model.active = model.layers[0] ?? null;
    const placed = model.place(null, 72, 36, null);
    expect([placed.width, placed.height]).toEqual([300, 150]);
    expect(model.place(null, 72, 36, 300)).toMatchObject({ width: 72, height: 36 });
    const r = withDocument(`var l = app.activeDocument.activeLayer; l.resize(50, 50, AnchorPosition.TOPLEFT); var b = l.bounds; out([b[0].value, b[1].value, b[2].value, b[3].value]);`, model);
    expect(r.error).toBeNull();
    expect(r.out).toEqual([[164, 132, 200, 150]]);
    expect(ANCHOR_POSITION.TOPLEFT).toBe(1);
    expect(new UnitValue(3).toString()).toBe('3 px');
  });
});

describe('the check script in docs/PHOTOPEA.md', () => {
  const doc = readFileSync(new URL('../../docs/PHOTOPEA.md', import.meta.url), 'utf8');
  const block = /<!-- photopea-check:begin -->\n```js\n([\s\S]*?)```\n<!-- photopea-check:end -->/.exec(doc)?.[1] ?? '';

  it('is six lines a user can paste, none starting with #', () => {
    const lines = block.trimEnd().split('\n');
    expect(lines).toHaveLength(6);
    expect(lines.some((l) => /^\s*#/.test(l))).toBe(false);
  });

  it('shows, in this model, exactly the values it predicts in brackets', () => {
    const alerts: string[] = [];
    const model = documentModel();
    const outcome = interpretPhotopeaScript(block, { alert: (t: unknown) => alerts.push(String(t)), ...model.app({ echo: () => undefined, save: () => undefined, open: () => undefined }) });
    expect(outcome.error).toBeNull();
    expect(alerts).toEqual([
      [
        'declared function: 1 (1), function expression: undefined (undefined)',
        'finally ran: false (false), layer ==: true (true), layer !=: true (true)',
        'left: 40, Number(bounds[0]): NaN (NaN), 0 - bounds[0]: 40 (40)',
        'selection.bounds, none selected: undefined (undefined), typeof width: number (number)',
      ].join('\n'),
    ]);
  });
});
