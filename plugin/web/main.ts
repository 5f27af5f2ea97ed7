// The standalone page (dist/plugin/web.html, served by the daemon at /): pick or drop an image, edit
// it with the shared panel (plugin/ui), compare before and after, download the result and the mask.
import '../ui/style.css';
import './web.css';
import type { PanelResult } from '../ui/host.js';
import { servedEndpoint } from '../ui/endpoint.js';
import { Panel } from '../ui/panel.js';
import { createWebHost, downloadName, type PickedImage, type WebStage } from './web-host.js';

function el<T extends HTMLElement>(id: string, type: { new (): T }): T {
  const found = document.getElementById(id);
  if (!(found instanceof type)) throw new Error(`The page is missing #${id}.`);
  return found;
}

const drop = el('drop', HTMLLabelElement);
const file = el('file', HTMLInputElement);
const dropText = el('drop-text', HTMLElement);
const compare = el('compare', HTMLElement);
const before = el('before', HTMLImageElement);
const after = el('after', HTMLImageElement);
const afterClip = el('after-clip', HTMLElement);
const slider = el('compare-slider', HTMLInputElement);
const compareState = el('compare-state', HTMLElement);
const downloads = el('downloads', HTMLElement);
const downloadImage = el('download-image', HTMLAnchorElement);
const downloadMask = el('download-mask', HTMLAnchorElement);

// The panel's words for this page: the "layer" is the picked image, Apply downloads.
el('apply', HTMLButtonElement).textContent = 'Download';
document.querySelector('#mask-mode option[value="masked"]')?.remove();
const maskLayer = document.querySelector<HTMLOptionElement>('#mask-mode option[value="layer"]');
if (maskLayer) maskLayer.textContent = 'Download it too';

let original: PickedImage | null = null;
let maskUrl: string | null = null;

const showSplit = (): void => {
  afterClip.style.clipPath = `inset(0 0 0 ${slider.value}%)`;
};

const stage: WebStage = {
  showOriginal(image) {
    original = image;
    before.src = image.url;
    after.removeAttribute('src');
    afterClip.hidden = true;
    compare.hidden = false;
    downloads.hidden = true;
    compareState.textContent = 'No result yet';
    drop.dataset['state'] = 'loaded';
    dropText.textContent = `${image.name} · ${image.width}×${image.height} · drop or click to pick another`;
  },
  showRefusal(text) {
    drop.dataset['state'] = 'error';
    dropText.textContent = `${text} Still editing ${original?.name ?? 'the image before'}: drop or click to pick another.`;
  },
  showResults(results: readonly PanelResult[]) {
    const r = results[0];
    if (r === undefined || original === null) {
      // No result (any more) for this image.
      after.removeAttribute('src');
      afterClip.hidden = true;
      downloads.hidden = true;
      compareState.textContent = 'No result yet';
      return;
    }
    after.src = r.url;
    afterClip.hidden = false;
    showSplit();
    compareState.textContent = `${r.edit.source} → ${r.edit.target}`;
    downloads.hidden = false;
    downloadImage.href = r.url;
    downloadImage.download = downloadName(original.name, r.edit, false);
    if (maskUrl !== null) URL.revokeObjectURL(maskUrl);
    maskUrl = r.mask === null ? null : URL.createObjectURL(new Blob([r.mask.bytes as Uint8Array<ArrayBuffer>], { type: 'image/png' }));
    downloadMask.hidden = maskUrl === null;
    if (maskUrl !== null) {
      downloadMask.href = maskUrl;
      downloadMask.download = downloadName(original.name, r.edit, true);
    }
  },
};

const port = Number(location.port) || (location.protocol === 'https:' ? 443 : 80);
const host = createWebHost({ port, endpoint: servedEndpoint(location.origin), storage: localStorage, doc: document, stage });
new Panel(document, host);

const take = (files: FileList | null): void => {
  const f = files?.[0];
  if (f !== undefined) void host.pick(f);
};
file.addEventListener('change', () => take(file.files));
slider.addEventListener('input', showSplit);
// Drop anywhere on the page.
document.addEventListener('dragover', (event) => {
  event.preventDefault();
  drop.dataset['state'] = 'over';
});
document.addEventListener('dragleave', () => {
  drop.dataset['state'] = original === null ? 'empty' : 'loaded';
});
document.addEventListener('drop', (event) => {
  event.preventDefault();
  drop.dataset['state'] = original === null ? 'empty' : 'loaded';
  take(event.dataTransfer?.files ?? null);
});
