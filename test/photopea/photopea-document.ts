// A model of the part of Photopea's scripting DOM the plugin uses, as Photopea exposes it to scripts:
// `app.documents.length`, `app.activeDocument` (`width`, `height`, `resolution`, `layers`,
// `activeLayer`, `selection`, `saveToOE`), layers (`name`, `visible`, `typename`, `layers`, `bounds`,
// `translate`, `resize`), `app.echoToOE` and `app.open(url, null, true)`. Pure (no DOM): the browser
// emulation (photopea-emulator.ts) and the Node tests share it; pixels are the caller's (`Image`).
//
// Where each behaviour comes from ([pp.js]: read from a published copy of Photopea's pp.js, p2pz
// issue 17; #N: github.com/photopea/photopea/issues/N):
// - Every read of a layer (`doc.activeLayer`, `doc.layers[i]`, `set.layers[i]`) hands out a fresh
//   wrapper object; `==` in the interpreter compares the layer underneath [pp.js].
// - `layer.bounds` is [left, top, right, bottom] (#6740: "coordinates of the top left and the bottom
//   right corner") as UnitValue objects read with `.value` (#5837, #6740); `document.width` and
//   `height` are plain numbers [pp.js].
// - While a selection exists, `layer.bounds` answers the selection's rectangle and `translate` moves
//   only the selected pixels (p2pz issue 17). Here such a translate (or resize) moves nothing and is
//   recorded in `misuses`, so a test can assert it never happens.
// - With no selection, `selection.bounds` is undefined (#5859: `selection.bounds == undefined`, and a
//   `try` around `selection.bounds.length` "should work well in Photopea now"); Photoshop throws
//   instead. Both are modelled (`noSelection: 'undefined' | 'throws'`): scripts must handle either.
// - `app.open(url, null, true)` places the image as a Smart Object above the active layer and makes
//   it active, asynchronously: the script's "done" comes before the layer exists (#3288's runScript
//   waits for "done" only; our page polls). Photopea places "in physical units" since 2023-05: an
//   image keeps its size in inches, so its pixel size is scaled by document DPI / image DPI (the
//   maintainer in #5612 and #5622). The image's DPI is its PNG pHYs; without one, 72 is ASSUMED here
//   (Photoshop's default; not observed in Photopea). The page must check the placed size and resize.
//   (p2pz issue 17 also cites #1191 for this; that issue was not found in the searchable copy of
//   Photopea's tracker, so nothing here rests on it.)
// - `layer.resize(h%, v%, AnchorPosition.TOPLEFT)` scales a layer from its top-left corner (#7207,
//   2024-10: fixed to anchor at the top left). Other anchors are refused (not used, not modelled).
import { UNDERLYING, UnitValue, Unmodelled } from './photopea-interpreter.js';

export interface ModelLayer<Image> {
  name: string;
  visible: boolean;
  left: number;
  top: number;
  width: number;
  height: number;
  readonly typename: 'ArtLayer' | 'LayerSet';
  /** Top of the stack first; only for a LayerSet. */
  readonly layers: ModelLayer<Image>[] | undefined;
  /** A placed Smart Object. */
  readonly smart: boolean;
  /** The pixels at their own size (drawn scaled to width×height). */
  readonly image: Image | null;
}

export interface Rect {
  readonly left: number;
  readonly top: number;
  readonly right: number;
  readonly bottom: number;
}

/** The host side of a script run: where `echoToOE`, `saveToOE` and `app.open` go. */
export interface ScriptHost {
  echo(text: string): void;
  save(format: string): void;
  open(url: string): void;
}

export const ANCHOR_POSITION = Object.freeze({ TOPLEFT: 1, TOPCENTER: 2, TOPRIGHT: 3, MIDDLELEFT: 4, MIDDLECENTER: 5, MIDDLERIGHT: 6, BOTTOMLEFT: 7, BOTTOMCENTER: 8, BOTTOMRIGHT: 9 });

export function artLayer<Image>(name: string, left: number, top: number, width: number, height: number, image: Image | null, visible = true): ModelLayer<Image> {
  return { name, visible, left, top, width, height, typename: 'ArtLayer', layers: undefined, smart: false, image };
}

export function layerSet<Image>(name: string, layers: ModelLayer<Image>[], visible = true): ModelLayer<Image> {
  return { name, visible, left: 0, top: 0, width: 0, height: 0, typename: 'LayerSet', layers, smart: false, image: null };
}

/** The layer's own rectangle (a group's: the union of its children's). */
export function layerRect<Image>(layer: ModelLayer<Image>): Rect | null {
  if (layer.layers === undefined) return { left: layer.left, top: layer.top, right: layer.left + layer.width, bottom: layer.top + layer.height };
  let out: Rect | null = null;
  for (const child of layer.layers) {
    const r = layerRect(child);
    if (r === null) continue;
    out = out === null ? r : { left: Math.min(out.left, r.left), top: Math.min(out.top, r.top), right: Math.max(out.right, r.right), bottom: Math.max(out.bottom, r.bottom) };
  }
  return out;
}

export class PhotopeaDocumentModel<Image> {
  /** Top of the stack first, as Photopea's `layers`. */
  layers: ModelLayer<Image>[] = [];
  active: ModelLayer<Image> | null = null;
  selection: Rect | null = null;
  /** What `selection.bounds` does with no selection. */
  noSelection: 'undefined' | 'throws' = 'undefined';
  /** Things a script did that damage the designer's document (e.g. translate with a selection). */
  readonly misuses: string[] = [];

  constructor(
    public width: number,
    public height: number,
    public resolution = 72,
  ) {}

  get open(): boolean {
    return this.layers.length > 0;
  }

  /** Every layer, depth first, top first. */
  all(): ModelLayer<Image>[] {
    const out: ModelLayer<Image>[] = [];
    const walk = (ls: ModelLayer<Image>[]): void => {
      for (const l of ls) {
        out.push(l);
        if (l.layers) walk(l.layers);
      }
    };
    walk(this.layers);
    return out;
  }

  /** The list holding `layer` (the document's or a group's). */
  private siblings(layer: ModelLayer<Image>): ModelLayer<Image>[] {
    const find = (ls: ModelLayer<Image>[]): ModelLayer<Image>[] | null => {
      if (ls.includes(layer)) return ls;
      for (const l of ls) {
        const inner = l.layers ? find(l.layers) : null;
        if (inner) return inner;
      }
      return null;
    };
    return find(this.layers) ?? this.layers;
  }

  /**
   * Places an image of `pixelWidth`×`pixelHeight` at `imageDpi` (null: no pHYs) as a Smart Object above
   * the active layer, centred, scaled by document DPI / image DPI; it becomes the active layer.
   */
  place(image: Image, pixelWidth: number, pixelHeight: number, imageDpi: number | null): ModelLayer<Image> {
    const scale = this.resolution / (imageDpi ?? 72);
    const width = Math.round(pixelWidth * scale);
    const height = Math.round(pixelHeight * scale);
    const layer: ModelLayer<Image> = {
      ...artLayer('Layer from file', Math.floor((this.width - width) / 2), Math.floor((this.height - height) / 2), width, height, image),
      smart: true,
    };
    const list = this.active === null ? this.layers : this.siblings(this.active);
    list.splice(this.active === null ? 0 : Math.max(0, list.indexOf(this.active)), 0, layer);
    this.active = layer;
    return layer;
  }

  /** The script-facing `app` for one run. */
  app(host: ScriptHost): Record<string, unknown> {
    const model = this;
    const unit = (r: Rect): UnitValue[] => [new UnitValue(r.left), new UnitValue(r.top), new UnitValue(r.right), new UnitValue(r.bottom)];
    const wrap = (layer: ModelLayer<Image>): Record<string | symbol, unknown> => {
      const w = {
        [UNDERLYING]: layer,
        get name() {
          return layer.name;
        },
        set name(v: unknown) {
          layer.name = String(v);
        },
        get visible() {
          return layer.visible;
        },
        set visible(v: unknown) {
          layer.visible = v === true;
        },
        get typename() {
          return layer.typename;
        },
        get layers() {
          return layer.layers?.map(wrap);
        },
        get bounds() {
          if (model.selection !== null) return unit(model.selection);
          return unit(layerRect(layer) ?? { left: 0, top: 0, right: 0, bottom: 0 });
        },
        translate(dx: unknown, dy: unknown) {
          if (typeof dx !== 'number' || typeof dy !== 'number' || !Number.isFinite(dx) || !Number.isFinite(dy)) {
            throw new Unmodelled(`translate(${String(dx)}, ${String(dy)}) with other than two finite numbers`);
          }
          if (model.selection !== null) {
            model.misuses.push(`translate of “${layer.name}” with a selection`);
            return;
          }
          const move = (l: ModelLayer<Image>): void => {
            l.left += dx;
            l.top += dy;
            l.layers?.forEach(move);
          };
          move(layer);
        },
        resize(h: unknown, v: unknown, anchor: unknown) {
          if (typeof h !== 'number' || typeof v !== 'number' || !(h > 0) || !(v > 0)) throw new Unmodelled('resize with other than positive percentages');
          if (anchor !== ANCHOR_POSITION.TOPLEFT) throw new Unmodelled('resize anchored elsewhere than AnchorPosition.TOPLEFT');
          if (layer.layers !== undefined) throw new Unmodelled('resize of a group');
          if (model.selection !== null) {
            model.misuses.push(`resize of “${layer.name}” with a selection`);
            return;
          }
          layer.width = Math.round((layer.width * h) / 100);
          layer.height = Math.round((layer.height * v) / 100);
        },
      };
      return w;
    };
    const selection = {
      get bounds() {
        if (model.selection !== null) return unit(model.selection);
        if (model.noSelection === 'throws') throw new Error('There is no selection.');
        return undefined;
      },
    };
    const doc = {
      [UNDERLYING]: model,
      get width() {
        return model.width;
      },
      get height() {
        return model.height;
      },
      get resolution() {
        return model.resolution;
      },
      get layers() {
        return model.layers.map(wrap);
      },
      get activeLayer() {
        return model.active === null ? null : wrap(model.active);
      },
      selection,
      saveToOE(format: unknown) {
        if (format !== 'png') throw new Unmodelled(`saveToOE(${String(format)})`);
        host.save(format);
      },
    };
    return {
      app: {
        documents: {
          get length() {
            return model.open ? 1 : 0;
          },
        },
        get activeDocument() {
          if (!model.open) throw new Error('No document is open.');
          return doc;
        },
        echoToOE(text: unknown) {
          host.echo(String(text));
        },
        open(url: unknown, as: unknown, asSmart: unknown) {
          if (typeof url !== 'string' || as !== null || asSmart !== true) throw new Unmodelled('app.open other than (url, null, true)');
          host.open(url);
        },
      },
      AnchorPosition: ANCHOR_POSITION,
    };
  }
}
