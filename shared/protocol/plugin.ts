// Messages between the Figma sandbox (plugin/figma) and the plugin UI iframe (plugin/ui), and the edit
// record the sandbox stores on result layers. Figma wraps messages as `{pluginMessage: ...}`; only
// plain data and Uint8Array cross. Written with `zod/mini` (tree-shakable): the sandbox bundle imports
// only this file and version.ts, and the full zod API would add ~450 KB to it.
import * as z from 'zod/mini';
import { Version } from './version.js';

export const PLUGIN_LIMITS = Object.freeze({
  /** Figma's largest image side (`figma.createImage` refuses more); larger results travel as tiles. */
  maxImageSide: 4096,
  /** figma.notify texts stay short: Figma truncates long toasts. */
  maxNotifyChars: 99,
  /** Layers edited in one batch. */
  maxBatch: 16,
  /** Tiles per image: a 16384² result (the daemon's limit is far below) is 16 tiles. */
  maxTiles: 64,
});

const Bytes = z.custom<Uint8Array>((value) => value instanceof Uint8Array, 'bytes (a Uint8Array)');
const NodeId = z.string().check(z.minLength(1), z.maxLength(200));
const Side = z.number().check(z.positive(), z.lte(1_000_000));
const RequestId = z.int().check(z.nonnegative());

/** A concept word as the plugin keeps it; the daemon's `Concept` (edit.ts) is the full check. */
const Word = z.string().check(z.trim(), z.minLength(1), z.maxLength(64));

/** An edit direction: source → target concept. */
export const Direction = z.object({ source: Word, target: Word });
export type Direction = z.infer<typeof Direction>;

/** Directions offered when the daemon has none of its own to suggest (the paper's examples). */
export const BUILTIN_DIRECTIONS: readonly Direction[] = Object.freeze([
  { source: 'cat', target: 'dog' },
  { source: 'dog', target: 'cat' },
  { source: 'horse', target: 'zebra' },
  { source: 'zebra', target: 'horse' },
  { source: 'cat', target: 'cat wearing glasses' },
  { source: 'sketch', target: 'oil painting' },
  { source: 'tree', target: 'tree in winter' },
]);

/** How a layer's pixels were read, and so how its result is placed back. */
export const ReadMode = z.enum(['image-fill', 'export']);
export type ReadMode = z.infer<typeof ReadMode>;

/** How the attention mask is placed: not at all, as its own layer, or as a luminance mask over the result. */
export const MaskMode = z.enum(['none', 'layer', 'masked']);
export type MaskMode = z.infer<typeof MaskMode>;

/** A selected layer the plugin can edit. */
export const SelectionItem = z.object({
  nodeId: NodeId,
  name: z.string().check(z.maxLength(500)),
  /** The layer's size on the canvas. */
  width: Side,
  height: Side,
  read: ReadMode,
});
export type SelectionItem = z.infer<typeof SelectionItem>;

/**
 * The edit record stored on a result layer (`setPluginData`) and offered again by "Re-run edit". It
 * mirrors the fields of `EditParams` (edit.ts) that a designer sets; the daemon validates them fully.
 */
export const LayerEdit = z.object({
  source: Word,
  target: Word,
  caption: z.optional(z.string().check(z.maxLength(300))),
  seed: z.int().check(z.gte(0), z.lte(2 ** 32 - 1)),
  steps: z.int().check(z.gte(1), z.lte(200)),
  cfg: z.number().check(z.gte(0), z.lte(30)),
  xa: z.number().check(z.gte(0), z.lte(10)),
  size: z.int().check(z.gte(64), z.lte(1024)),
  editScale: z.number().check(z.gte(-5), z.lte(5)),
  /** The edit was blended into the original through the mask (background kept pixel-exact). */
  blend: z.optional(z.boolean()),
  /** Which job made the result and which engine ran it. */
  kind: z.enum(['preview', 'render']),
  engine: z.enum(['gan', 'diffusion-preview', 'diffusion']),
  /** The layer the edit was made from (it may since have been deleted). */
  originalId: NodeId,
});
export type LayerEdit = z.infer<typeof LayerEdit>;

/** One piece of an image: at most `maxImageSide` on each side, at (x, y) in the full image's pixels. */
export const ImageTile = z.object({
  x: z.int().check(z.nonnegative()),
  y: z.int().check(z.nonnegative()),
  width: z.int().check(z.positive(), z.lte(PLUGIN_LIMITS.maxImageSide)),
  height: z.int().check(z.positive(), z.lte(PLUGIN_LIMITS.maxImageSide)),
  /** PNG bytes. */
  bytes: Bytes,
});
export type ImageTile = z.infer<typeof ImageTile>;

/** A PNG result, whole (one tile) or cut into tiles when a side exceeds Figma's image limit. */
export const TiledImage = z.object({
  width: z.int().check(z.positive()),
  height: z.int().check(z.positive()),
  tiles: z.array(ImageTile).check(z.minLength(1), z.maxLength(PLUGIN_LIMITS.maxTiles)),
});
export type TiledImage = z.infer<typeof TiledImage>;

/** One result to place above its original layer. */
export const PlaceItem = z.object({
  nodeId: NodeId,
  /** How the original was read (ImageBytes.read): decides how the result is placed. */
  read: ReadMode,
  image: TiledImage,
  mask: z.nullable(TiledImage),
  edit: LayerEdit,
});
export type PlaceItem = z.infer<typeof PlaceItem>;

/** Where the panel reaches the daemon, when not the local one: the origin of a team endpoint
 *  (`https://p2pz.studio.example`), or a loopback `http://` origin. The panel checks it fully
 *  (plugin/ui/endpoint.ts); here only its shape, since the sandbox has no URL parser. */
export const DaemonEndpoint = z.string().check(z.maxLength(200), z.regex(/^https?:\/\/[^/?#\s@]+$/));

// ---- sandbox → UI ----

/** First message: what the UI needs to start. */
export const InitMessage = z.object({
  v: Version,
  type: z.literal('init'),
  /** The daemon token kept in figma.clientStorage, or null before pairing. */
  token: z.nullable(z.string().check(z.maxLength(200))),
  /** The daemon's port on localhost. */
  port: z.int().check(z.gte(1), z.lte(65535)),
  /** The daemon endpoint chosen in the panel and kept in figma.clientStorage; null or absent: the
   *  local daemon on `port`. */
  endpoint: z.optional(z.nullable(DaemonEndpoint)),
  /** The menu command, quick action or relaunch button that opened the plugin. */
  command: z.enum(['open', 'edit', 'rerun']),
  /** A direction (quick action) or a whole stored edit (relaunch) to start from. */
  direction: z.nullable(Direction),
  edit: z.nullable(LayerEdit),
  /** Start a preview at once (quick action and relaunch). */
  autoPreview: z.boolean(),
});
export const SelectionMessage = z.object({
  v: Version,
  type: z.literal('selection'),
  items: z.array(SelectionItem).check(z.maxLength(PLUGIN_LIMITS.maxBatch)),
  /** Why the selection cannot be edited (shown instead of the items), or null. */
  problem: z.nullable(z.string().check(z.maxLength(300))),
});
export const ImageBytes = z.object({
  nodeId: NodeId,
  bytes: Bytes,
  mime: z.enum(['image/png', 'image/jpeg', 'image/webp']),
  read: ReadMode,
});
export type ImageBytes = z.infer<typeof ImageBytes>;
export const ImagesMessage = z.object({
  v: Version,
  type: z.literal('images'),
  requestId: RequestId,
  images: z.array(ImageBytes).check(z.maxLength(PLUGIN_LIMITS.maxBatch)),
});
export const PlacedMessage = z.object({
  v: Version,
  type: z.literal('placed'),
  requestId: RequestId,
  /** The new top-level layers, one per placed result. */
  nodeIds: z.array(NodeId),
});
/** A request the sandbox could not carry out. */
export const SandboxErrorMessage = z.object({
  v: Version,
  type: z.literal('sandbox-error'),
  requestId: RequestId,
  message: z.string().check(z.maxLength(500)),
});
export const SandboxMessage = z.discriminatedUnion('type', [InitMessage, SelectionMessage, ImagesMessage, PlacedMessage, SandboxErrorMessage]);
export type SandboxMessage = z.infer<typeof SandboxMessage>;

// ---- UI → sandbox ----

export const SaveTokenMessage = z.object({ v: Version, type: z.literal('save-token'), token: z.nullable(z.string().check(z.maxLength(200))) });
/** Keep (or, with null, forget) the daemon endpoint chosen in the panel. */
export const SaveEndpointMessage = z.object({ v: Version, type: z.literal('save-endpoint'), endpoint: z.nullable(DaemonEndpoint) });
export const NotifyMessage = z.object({
  v: Version,
  type: z.literal('notify'),
  text: z.string().check(z.minLength(1), z.maxLength(PLUGIN_LIMITS.maxNotifyChars)),
  error: z._default(z.boolean(), false),
});
/** Read the pixels of these selected layers (in order). */
export const ReadImagesMessage = z.object({
  v: Version,
  type: z.literal('read-images'),
  requestId: RequestId,
  nodeIds: z.array(NodeId).check(z.minLength(1), z.maxLength(PLUGIN_LIMITS.maxBatch)),
});
export const PlaceResultsMessage = z.object({
  v: Version,
  type: z.literal('place-results'),
  requestId: RequestId,
  maskMode: MaskMode,
  items: z.array(PlaceItem).check(z.minLength(1), z.maxLength(PLUGIN_LIMITS.maxBatch)),
});
export const ResizeMessage = z.object({
  v: Version,
  type: z.literal('resize'),
  width: z.int().check(z.gte(240), z.lte(800)),
  height: z.int().check(z.gte(200), z.lte(1200)),
});
export const UiMessage = z.discriminatedUnion('type', [SaveTokenMessage, SaveEndpointMessage, NotifyMessage, ReadImagesMessage, PlaceResultsMessage, ResizeMessage]);
export type UiMessage = z.infer<typeof UiMessage>;
export type UiMessageInput = z.input<typeof UiMessage>;

/** The part of the daemon's `GET /v1/health` answer the sandbox reads for quick-action suggestions
 *  (the installed GAN generators' directions); other fields are ignored. */
export const HealthDirections = z.object({
  models: z.array(z.object({ direction: z.optional(Direction) })).check(z.maxLength(1000)),
});
