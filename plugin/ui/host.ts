// What the panel needs from the editor around it, so that one panel serves Figma (plugin/ui, through
// the sandbox bridge), Photopea (plugin/photopea, through Photopea's script messaging) and the
// standalone page (plugin/web, a picked file). The host pushes the start state and the selection, reads
// the selected layers' pixels, places results, and keeps the token.
import type { ImageBytes, LayerEdit, MaskMode, SandboxMessage } from '../../shared/protocol/index.js';

/** The messages a host pushes unasked: `init` once, then `selection` whenever it changes. */
export type HostPush = Exclude<SandboxMessage, { requestId: number }>;

/** A PNG with its size. */
export interface PngImage {
  readonly bytes: Uint8Array;
  readonly width: number;
  readonly height: number;
}

/** One finished edit of one layer, as the panel shows it and a host places it. */
export interface PanelResult {
  readonly nodeId: string;
  readonly read: ImageBytes['read'];
  readonly edit: LayerEdit;
  readonly image: PngImage;
  readonly mask: PngImage | null;
  /** An object URL of the image, for <img> (revoked by the panel when the result is replaced). */
  readonly url: string;
}

export interface PanelHost {
  /** Names this client: the prefix of its event-stream id and the label of its pairing. */
  readonly client: string;
  /** Starts pushing `init` and `selection` messages. */
  start(onPush: (message: HostPush) => void): void;
  /** The pixels of the given selected layers, in order. */
  readImages(nodeIds: readonly string[]): Promise<ImageBytes[]>;
  /** Places (or saves) the results; answers the caption to show. */
  place(maskMode: MaskMode, results: readonly PanelResult[]): Promise<string>;
  /** Keeps the daemon token (null forgets it). */
  saveToken(token: string | null): void;
  /** Keeps the daemon endpoint chosen in the panel (null: the local daemon). Only a host whose panel
   *  may talk to another daemon has it (Figma); a page the daemon served talks to its own origin. */
  saveEndpoint?(endpoint: string | null): void;
  /** A short notice in the editor. */
  notify(text: string): void;
  /** What to add when the daemon does not answer (default: the Figma plugin's advice about the
   *  browser's local-network permission). */
  readonly unreachableNote?: string;
  /** A new selection replaces the old layers, so results of layers no longer selected are dropped
   *  (the standalone page: a new image is not the old one). Default: results stay until replaced. */
  readonly resultsFollowSelection?: boolean;
  /** Called whenever the panel shows new results (the standalone page's before/after view). */
  showResults?(results: readonly PanelResult[]): void;
}
