// The standalone page's download names: the picked file's base name, the edit and the seed, with
// anything a file system could object to replaced.
import { describe, expect, it } from 'vitest';
import type { LayerEdit } from '../../shared/protocol/index.js';
import { downloadName } from '../../plugin/web/web-host.js';

const edit: LayerEdit = { source: 'cat', target: 'dog', seed: 42, steps: 50, cfg: 5, xa: 0.1, size: 512, editScale: 1, kind: 'render', engine: 'diffusion', originalId: 'file-1' };

describe('downloadName', () => {
  it('joins the file name, the edit and the seed', () => {
    expect(downloadName('my cat.png', edit, false)).toBe('my-cat-cat-to-dog-seed-42.png');
    expect(downloadName('my cat.png', edit, true)).toBe('my-cat-cat-to-dog-seed-42-mask.png');
    expect(downloadName('photo.jpeg', { ...edit, kind: 'preview', seed: 7 }, false)).toBe('photo-cat-to-dog-preview-seed-7.png');
  });
  it('keeps letters of any script and replaces separators and path characters', () => {
    expect(downloadName('../../etc/passwd', edit, false)).toBe('passwd-cat-to-dog-seed-42.png');
    expect(downloadName('C:\\Users\\me\\.hidden.png', edit, false)).toBe('hidden-cat-to-dog-seed-42.png');
    expect(downloadName('Katze Bild.webp', { ...edit, source: 'Katze', target: "chien d'or" }, false)).toBe('Katze-Bild-Katze-to-chien-d-or-seed-42.png');
    expect(downloadName('.png', edit, false)).toBe('image-cat-to-dog-seed-42.png');
  });
});
