/// <reference path="../../node_modules/@figma/plugin-typings/plugin-api.d.ts" />
// A Figma plugin API for tests: figma-api-stub's document model (nodes, children, plugin data,
// relaunch data, selection) completed with shims where it falls short: image bytes and hashes
// (`createImage` refuses more than 4096 px a side, as Figma does; `getImageByHash`), `exportAsync`
// bytes, transforms (relativeTransform with derived x/y/rotation, absoluteTransform,
// absoluteBoundingBox), `clone`, `clientStorage`, quick-action `parameters`, the `run` event, the UI
// channel, `notify`, `getNodeByIdAsync` and an undo history driven by `commitUndo`. Environment-
// neutral: the Node tests use it directly and the browser host page bundles it.
//
// Figma's rules that the stub does not enforce, and where each was learned:
// - Nothing can be put into a component instance or anything inside one: `appendChild`,
//   `insertChild` and `figma.group` with such a parent throw "Cannot move node. New parent is an
//   instance or is inside of an instance", and moving a node that is inside an instance throws
//   "Cannot move node. Node is inside of an instance". Both texts are in the "Possible error cases"
//   of Figma's reparenting APIs (https://www.figma.com/plugin-docs/api/figma-flatten/, the same list
//   for figma.group); @figma/plugin-typings 1.142 (plugin-api.d.ts, `group` and `flatten`) says their
//   nodes "cannot include any node that cannot be reparented, such as children of instances. Make a
//   copy of those nodes first if necessary", so `clone` of an instance child works. Notes in public
//   plugin repositories quote the first message verbatim for `appendChild` into an instance.
// - A new node (`createRectangle`, `createFrame`, `clone`) starts on `figma.currentPage`: the stub
//   does so for the create calls, and plugin-typings 1.142 says of every `clone()` "By default, the
//   duplicate will be parented under `figma.currentPage`".
// - `createImage` takes PNG, JPEG or GIF bytes of at most 4096 px a side; "Invalid images will throw
//   an error" (plugin-typings 1.142, `createImage`). The shim's message for them is its own.
// figma-api-stub's own `createInstance` parents the copies under the component, not the instance,
// so instances are made here by `makeInstance`, which turns a fixture frame into an INSTANCE.
import { createFigma } from 'figma-api-stub';

export const FIGMA_IMAGE_LIMIT = 4096;

type Affine = Transform;
const IDENTITY: Affine = [
  [1, 0, 0],
  [0, 1, 0],
];

export const FIGMA_ERRORS = Object.freeze({
  parentInInstance: 'Cannot move node. New parent is an instance or is inside of an instance',
  nodeInInstance: 'Cannot move node. Node is inside of an instance',
});

/** Whether `node` is an instance or lies inside one. */
function isOrInInstance(node: { type: string; parent: unknown } | null): boolean {
  for (let n = node; n !== null && n !== undefined; n = n.parent as typeof node) if (n.type === 'INSTANCE') return true;
  return false;
}

/** Whether `node` lies inside an instance (an instance itself may be moved). */
function inInstance(node: { type: string; parent: unknown }): boolean {
  return isOrInInstance(node.parent as { type: string; parent: unknown } | null);
}

function multiply(p: Affine, q: Affine): Affine {
  const [[a1, c1, e1], [b1, d1, f1]] = p;
  const [[a2, c2, e2], [b2, d2, f2]] = q;
  return [
    [a1 * a2 + c1 * b2, a1 * c2 + c1 * d2, a1 * e2 + c1 * f2 + e1],
    [b1 * a2 + d1 * b2, b1 * c2 + d1 * d2, b1 * e2 + d1 * f2 + f1],
  ];
}

/** Figma's transform for a layer at (x, y) rotated by `degrees` (counter-clockwise on screen). */
export function layerTransform(x: number, y: number, degrees = 0): Affine {
  const t = (degrees * Math.PI) / 180;
  return [
    [Math.cos(t), Math.sin(t), x],
    [-Math.sin(t), Math.cos(t), y],
  ];
}

/** Width and height from a PNG header (IHDR) or a JPEG SOF marker. */
export function imageSize(bytes: Uint8Array): { width: number; height: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes[0] === 0x89 && bytes[1] === 0x50) return { width: view.getUint32(16), height: view.getUint32(20) };
  if (bytes[0] === 0xff && bytes[1] === 0xd8) {
    let i = 2;
    while (i + 9 < bytes.length) {
      const marker = bytes[i + 1] ?? 0;
      const length = view.getUint16(i + 2);
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        return { width: view.getUint16(i + 7), height: view.getUint16(i + 5) };
      }
      i += 2 + length;
    }
  }
  if (bytes[0] === 0x47 && bytes[1] === 0x49) return { width: view.getUint16(6, true), height: view.getUint16(8, true) }; // GIF
  throw new Error('Image type is unsupported');
}

export interface Notification {
  readonly text: string;
  readonly error: boolean;
}

export interface FigmaShim {
  readonly figma: PluginAPI;
  /** Messages the sandbox posted to the UI, in order. */
  readonly toUi: unknown[];
  readonly notifications: Notification[];
  readonly storage: Map<string, unknown>;
  /** exportAsync calls: the node id and the settings. */
  readonly exports: { nodeId: string; settings: ExportSettings | undefined }[];
  /** showUI's options, once shown. */
  shownUi: ShowUIOptions | null;
  /** Called with each message the sandbox posts to the UI (the browser host relays it). */
  onUiMessage: ((message: unknown) => void) | null;
  /** Delivers a message from the UI to the sandbox (what Figma does with `pluginMessage`). */
  sendToSandbox(message: unknown): void;
  /** Fires the `run` event as Figma does after launch (and after quick-action input). */
  run(command: string, parameters?: ParameterValues): void;
  /** Types `query` into the quick-action field of parameter `key`; resolves with the suggestions. */
  parameterInput(key: string, query: string, parameters?: ParameterValues): Promise<(string | { name: string })[]>;
  /** Cmd+Z: reverts to the state of the last `commitUndo()`. */
  undo(): void;
  /** A rectangle on `parent` (default the page) at (x, y), size w×h, rotated by `rotation` degrees. */
  rectangle(options: { name: string; x: number; y: number; width: number; height: number; rotation?: number; fills?: Paint[]; parent?: BaseNode & ChildrenMixin }): RectangleNode;
  frame(options: { name: string; x: number; y: number; width: number; height: number; rotation?: number; parent?: BaseNode & ChildrenMixin; layoutMode?: 'NONE' | 'HORIZONTAL' | 'VERTICAL' }): FrameNode;
  /** Turns a fixture frame (its children already built) into a component instance. */
  makeInstance(frame: FrameNode): InstanceNode;
  /** A group of fixture nodes, as a designer would have made it. */
  groupOf(nodes: SceneNode[], parent: BaseNode & ChildrenMixin, name: string): GroupNode;
  /** Registers image bytes as Figma would store a fill's image; returns the hash. */
  addImage(bytes: Uint8Array): string;
  /** Bytes that `node.exportAsync` returns. */
  setExportBytes(node: SceneNode, bytes: Uint8Array): void;
  select(nodes: SceneNode[]): void;
  /** The pixel size of a stored image, or null for an unknown hash. */
  imageHeader(hash: string): { width: number; height: number } | null;
}

interface ShimNode {
  id: string;
  type: string;
  name: string;
  parent: (ShimNode & { children: ShimNode[] }) | null;
  children?: ShimNode[];
  width: number;
  height: number;
  removed?: boolean;
  remove(): void;
  resize(w: number, h: number): void;
  appendChild?(child: ShimNode): void;
  insertChild?(index: number, child: ShimNode): void;
  [key: string]: unknown;
}

export function createFigmaShim(options: { command?: string } = {}): FigmaShim {
  // simulateErrors would refuse insertChild of a node already in the parent, which Figma allows (it moves it).
  const stub = createFigma({ simulateErrors: false, isWithoutTimeout: true }) as unknown as Record<string, unknown> & {
    currentPage: ShimNode & { selection: ShimNode[] };
    root: ShimNode;
    createRectangle(): ShimNode;
    createFrame(): ShimNode;
    group(nodes: ShimNode[], parent: ShimNode, index?: number): ShimNode;
    on(type: string, cb: (...args: unknown[]) => void): void;
  };
  const images = new Map<string, Uint8Array>();
  const exportBytes = new Map<string, Uint8Array>();
  const toUi: unknown[] = [];
  const notifications: Notification[] = [];
  const storage = new Map<string, unknown>();
  const exports: { nodeId: string; settings: ExportSettings | undefined }[] = [];
  const runHandlers: ((event: RunEvent) => void)[] = [];
  const inputHandlers: ((event: ParameterInputEvent) => void)[] = [];
  let uiHandler: ((message: unknown) => void) | undefined;
  const uiListeners: ((message: unknown) => void)[] = [];
  let pending: ShimNode[] = [];
  const steps: ShimNode[][] = [];
  let imageCounter = 0;

  const containerAbsolute = (node: ShimNode): Affine => {
    let p = node.parent;
    while (p !== null && (p.type === 'GROUP' || p.type === 'BOOLEAN_OPERATION')) p = p.parent;
    if (p === null || p.type === 'PAGE' || p.type === 'DOCUMENT') return IDENTITY;
    return p['absoluteTransform'] as Affine;
  };

  /** Figma's reparenting refusals on a node that takes children (see the header). */
  const guardChildren = (node: ShimNode): void => {
    for (const name of ['appendChild', 'insertChild'] as const) {
      const original = node[name];
      if (typeof original !== 'function') continue;
      node[name] = (...args: unknown[]): void => {
        const child = args[args.length - 1] as ShimNode;
        if (isOrInInstance(node)) throw new Error(FIGMA_ERRORS.parentInInstance);
        if (inInstance(child)) throw new Error(FIGMA_ERRORS.nodeInInstance);
        (original as (...a: unknown[]) => void).apply(node, args);
      };
    }
  };
  guardChildren(stub.currentPage);

  const decorate = (node: ShimNode): ShimNode => {
    guardChildren(node);
    let rt: Affine = IDENTITY;
    Object.defineProperty(node, 'relativeTransform', {
      get: () => rt,
      set: (v: Affine) => {
        rt = [[...v[0]], [...v[1]]] as Affine;
      },
      configurable: true,
    });
    Object.defineProperty(node, 'x', { get: () => rt[0][2], set: (v: number) => (rt = [[rt[0][0], rt[0][1], v], rt[1]]), configurable: true });
    Object.defineProperty(node, 'y', { get: () => rt[1][2], set: (v: number) => (rt = [rt[0], [rt[1][0], rt[1][1], v]]), configurable: true });
    Object.defineProperty(node, 'rotation', { get: () => (Math.atan2(-rt[1][0], rt[0][0]) * 180) / Math.PI, configurable: true });
    Object.defineProperty(node, 'absoluteTransform', { get: () => multiply(containerAbsolute(node), rt), configurable: true });
    Object.defineProperty(node, 'absoluteBoundingBox', {
      get: () => {
        const t = node['absoluteTransform'] as Affine;
        const pts = [
          [0, 0],
          [node.width, 0],
          [0, node.height],
          [node.width, node.height],
        ].map(([x = 0, y = 0]) => [t[0][0] * x + t[0][1] * y + t[0][2], t[1][0] * x + t[1][1] * y + t[1][2]] as const);
        const xs = pts.map((p) => p[0]);
        const ys = pts.map((p) => p[1]);
        const x = Math.min(...xs);
        const y = Math.min(...ys);
        return { x, y, width: Math.max(...xs) - x, height: Math.max(...ys) - y };
      },
      configurable: true,
    });
    node['visible'] = true;
    node['locked'] = false;
    node['isMask'] = false;
    node['maskType'] = 'ALPHA';
    node['layoutPositioning'] = 'AUTO';
    node.width ??= 100;
    node.height ??= 100;
    node['exportAsync'] = (settings?: ExportSettings): Promise<Uint8Array> => {
      exports.push({ nodeId: node.id, settings });
      const bytes = exportBytes.get(node.id);
      return bytes === undefined ? Promise.reject(new Error('No export bytes registered for this node')) : Promise.resolve(bytes);
    };
    node['clone'] = (): ShimNode => {
      const copy = node.type === 'FRAME' ? decorate(stub.createFrame()) : decorate(stub.createRectangle());
      copy.name = node.name;
      copy.resize(node.width, node.height);
      copy['relativeTransform'] = node['relativeTransform'];
      copy['fills'] = node['fills'];
      copy['cornerRadius'] = node['cornerRadius'];
      // create* already put it on the current page, where Figma's clone() puts the duplicate.
      pending.push(copy);
      return copy;
    };
    return node;
  };

  const createImage = (bytes: Uint8Array): Image => {
    const { width, height } = imageSize(bytes);
    if (width > FIGMA_IMAGE_LIMIT || height > FIGMA_IMAGE_LIMIT) throw new Error(`Image is too large (${width}×${height}; at most ${FIGMA_IMAGE_LIMIT} per side)`);
    const hash = `hash${++imageCounter}`;
    images.set(hash, bytes);
    return imageObject(hash, bytes);
  };
  const imageObject = (hash: string, bytes: Uint8Array): Image =>
    ({ hash, getBytesAsync: () => Promise.resolve(bytes), getSizeAsync: () => Promise.resolve(imageSize(bytes)) }) as Image;

  const ui = {
    postMessage: (message: unknown) => {
      toUi.push(message);
      shim.onUiMessage?.(message);
    },
    on: (type: string, cb: (message: unknown) => void) => {
      if (type === 'message') uiListeners.push(cb);
    },
    off: () => undefined,
    once: () => undefined,
    resize: (width: number, height: number) => {
      if (shim.shownUi) shim.shownUi = { ...shim.shownUi, width, height };
    },
    reposition: () => undefined,
    show: () => undefined,
    hide: () => undefined,
    close: () => undefined,
    get onmessage() {
      return uiHandler;
    },
    set onmessage(cb: ((message: unknown) => void) | undefined) {
      uiHandler = cb;
    },
  };

  const originalOn = stub.on.bind(stub);
  const api: Record<string, unknown> = stub;
  api['command'] = options.command ?? '';
  api['editorType'] = 'figma';
  api['ui'] = ui;
  api['showUI'] = (_html: string, opts?: ShowUIOptions) => {
    shim.shownUi = opts ?? {};
  };
  api['notify'] = (text: string, opts?: NotificationOptions) => {
    notifications.push({ text, error: opts?.error === true });
    return { cancel: () => undefined };
  };
  api['createImage'] = createImage;
  api['getImageByHash'] = (hash: string): Image | null => {
    const bytes = images.get(hash);
    return bytes === undefined ? null : imageObject(hash, bytes);
  };
  // figma-api-stub's getNodeById reads a global `figma`; search this document instead.
  const findNode = (node: ShimNode, id: string): ShimNode | null => {
    if (node.id === id) return node;
    for (const child of node.children ?? []) {
      const found = findNode(child, id);
      if (found) return found;
    }
    return null;
  };
  api['getNodeByIdAsync'] = (id: string) => Promise.resolve(findNode(stub.root, id));
  api['clientStorage'] = {
    getAsync: (key: string) => Promise.resolve(storage.get(key)),
    setAsync: (key: string, value: unknown) => {
      storage.set(key, structuredClone(value));
      return Promise.resolve();
    },
    deleteAsync: (key: string) => {
      storage.delete(key);
      return Promise.resolve();
    },
    keysAsync: () => Promise.resolve([...storage.keys()]),
  };
  api['parameters'] = {
    on: (type: string, cb: (event: ParameterInputEvent) => void) => {
      if (type === 'input') inputHandlers.push(cb);
    },
    once: () => undefined,
    off: () => undefined,
  };
  api['on'] = (type: string, cb: (...args: unknown[]) => void) => {
    if (type === 'run') runHandlers.push(cb as (event: RunEvent) => void);
    else originalOn(type, cb);
  };
  api['commitUndo'] = () => {
    if (pending.length > 0) steps.push(pending);
    pending = [];
  };
  api['triggerUndo'] = () => shim.undo();
  for (const name of ['createRectangle', 'createFrame'] as const) {
    const create = stub[name].bind(stub);
    api[name] = () => {
      const node = decorate(create());
      pending.push(node);
      return node;
    };
  }
  const group = stub.group.bind(stub);
  api['group'] = (nodes: ShimNode[], parent: ShimNode, index?: number) => {
    if (nodes.length === 0) throw new Error('Grouping needs at least one node');
    if (isOrInInstance(parent)) throw new Error(FIGMA_ERRORS.parentInInstance);
    if (nodes.some(inInstance)) throw new Error(FIGMA_ERRORS.nodeInInstance);
    const g = decorate(group(nodes, parent, index));
    // figma-api-stub appends at `index` only when it is truthy; Figma inserts at the index.
    if (index !== undefined && parent.children) {
      parent.children = parent.children.filter((c) => c !== g);
      parent.children.splice(index, 0, g);
    }
    pending.push(g);
    return g;
  };

  const shim: FigmaShim = {
    figma: stub as unknown as PluginAPI,
    toUi,
    notifications,
    storage,
    exports,
    shownUi: null,
    onUiMessage: null,
    sendToSandbox: (message) => {
      uiHandler?.(message);
      for (const l of uiListeners) l(message);
    },
    run: (command, parameters) => {
      api['command'] = command;
      for (const h of runHandlers) h({ command, parameters } as RunEvent);
    },
    parameterInput: (key, query, parameters = {}) =>
      new Promise((resolve, reject) => {
        const result = {
          setSuggestions: (s: (string | { name: string })[]) => resolve(s),
          setError: (message: string) => reject(new Error(message)),
          setLoadingMessage: () => undefined,
        } as unknown as SuggestionResults;
        for (const h of inputHandlers) h({ key, query, parameters, result });
      }),
    undo: () => {
      const step = pending.length > 0 ? pending : steps.pop();
      pending = [];
      for (const node of [...(step ?? [])].reverse()) if (!node.removed) node.remove();
    },
    rectangle: (o) => {
      const node = (api['createRectangle'] as () => ShimNode)();
      node.name = o.name;
      node.resize(o.width, o.height);
      node['relativeTransform'] = layerTransform(o.x, o.y, o.rotation ?? 0);
      if (o.fills) node['fills'] = o.fills;
      if (o.parent) (o.parent as unknown as ShimNode).appendChild?.(node);
      pending = pending.filter((n) => n !== node); // fixtures are not undoable plugin work
      return node as unknown as RectangleNode;
    },
    frame: (o) => {
      const node = (api['createFrame'] as () => ShimNode)();
      node.name = o.name;
      node.resize(o.width, o.height);
      node['relativeTransform'] = layerTransform(o.x, o.y, o.rotation ?? 0);
      node['layoutMode'] = o.layoutMode ?? 'NONE';
      node['fills'] = [];
      if (o.parent) (o.parent as unknown as ShimNode).appendChild?.(node);
      pending = pending.filter((n) => n !== node);
      return node as unknown as FrameNode;
    },
    makeInstance: (frame) => {
      const node = frame as unknown as ShimNode;
      node.type = 'INSTANCE';
      return frame as unknown as InstanceNode;
    },
    groupOf: (nodes, parent, name) => {
      const g = (api['group'] as (n: SceneNode[], p: BaseNode & ChildrenMixin) => ShimNode)(nodes, parent);
      g.name = name;
      pending = pending.filter((n) => n !== g);
      return g as unknown as GroupNode;
    },
    addImage: (bytes) => {
      const hash = `fixture${++imageCounter}`;
      images.set(hash, bytes);
      return hash;
    },
    setExportBytes: (node, bytes) => {
      exportBytes.set(node.id, bytes);
    },
    select: (nodes) => {
      stub.currentPage.selection = nodes as unknown as ShimNode[];
    },
    imageHeader: (hash) => {
      const stored = images.get(hash);
      return stored === undefined ? null : imageSize(stored);
    },
  };
  return shim;
}
