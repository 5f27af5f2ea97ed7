// Pure parts of the Photopea document steps: the rectangle an export can see (bounds clipped to the
// canvas, whole pixels) and the result layer's name.
import { describe, expect, it } from 'vitest';
import { visibleRect } from '../../plugin/photopea/document.js';
import { resultName } from '../../plugin/photopea/photopea-host.js';

describe('visibleRect', () => {
  it('is the bounds inside the canvas', () => {
    expect(visibleRect([40, 30, 136, 94], 200, 150)).toEqual({ left: 40, top: 30, width: 96, height: 64 });
  });
  it('clips a layer hanging over the edges', () => {
    expect(visibleRect([-20, -10, 50, 40], 200, 150)).toEqual({ left: 0, top: 0, width: 50, height: 40 });
    expect(visibleRect([180, 140, 260, 190], 200, 150)).toEqual({ left: 180, top: 140, width: 20, height: 10 });
  });
  it('rounds fractional bounds outwards', () => {
    expect(visibleRect([10.4, 20.6, 30.2, 40.9], 200, 150)).toEqual({ left: 10, top: 20, width: 21, height: 21 });
  });
  it('is null for an empty layer or one off the canvas', () => {
    expect(visibleRect([0, 0, 0, 0], 200, 150)).toBeNull();
    expect(visibleRect([210, 10, 300, 50], 200, 150)).toBeNull();
    expect(visibleRect([10, -50, 50, 0], 200, 150)).toBeNull();
  });
});

describe('resultName', () => {
  it('names renders and previews as the Figma plugin does', () => {
    expect(resultName({ source: 'cat', target: 'dog', seed: 42, kind: 'render' })).toBe('cat → dog (seed 42)');
    expect(resultName({ source: 'cat', target: "dog's o'clock", seed: 7, kind: 'preview' })).toBe("cat → dog's o'clock (preview, seed 7)");
  });
});
