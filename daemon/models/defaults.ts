// Defaults of model installation: where models come from (the Hugging Face hub, or a mirror named by
// P2PZ_HUB_URL), which model is installed when none is named, which files of a diffusers ONNX export
// are kept, and the download limits. One frozen object, documented entry by entry.
export const MODELS_DEFAULTS = Object.freeze({
  /** The hub's base URL; `P2PZ_HUB_URL` (or `--hub-url`) replaces it (mirrors, tests on 127.0.0.1). */
  hubUrl: 'https://huggingface.co',
  /** Environment variable naming another hub base URL. */
  hubUrlEnv: 'P2PZ_HUB_URL',
  /** Environment variables holding a hub access token (gated models), first set wins. Sent only to
   *  the hub's own origin, never to the storage hosts it redirects to. */
  tokenEnv: ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN'] as readonly string[],
  /** The paper's base model, Stable Diffusion v1.4, in the diffusers ONNX export (its `onnx` branch). */
  repo: 'CompVis/stable-diffusion-v1-4',
  revision: 'onnx',
  /** Folder name of the default model; the pipeline uses this folder when a job names none. */
  name: 'stable-diffusion-v1-4',
  /** The one command that installs the default model (printed by `npm start` without a model), run
   *  from the project folder (`p2pz models install` where the package is installed globally). */
  installCommand: 'node bin/p2pz.js models install',
  /** Files of a repository that are installed: the diffusers/optimum ONNX layout (docs/DESIGN.md §2). The
   *  safety checker, feature extractor, README and images are skipped. */
  components: ['text_encoder', 'unet', 'vae_encoder', 'vae_decoder', 'tokenizer', 'scheduler'] as readonly string[],
  /** Files a Stable Diffusion 1.x folder must have (docs/DESIGN.md §2). */
  requiredFiles: [
    'model_index.json', 'text_encoder/model.onnx', 'unet/model.onnx', 'vae_encoder/model.onnx', 'vae_decoder/model.onnx',
    'tokenizer/vocab.json', 'tokenizer/merges.txt', 'scheduler/scheduler_config.json',
  ] as readonly string[],
  /** Top-level files that are installed. */
  topLevelFiles: ['model_index.json'] as readonly string[],
  /** Downloads in progress live here (inside the models directory, so the final rename is atomic);
   *  the name starts with a dot and holds no model_index.json, so it is never listed as a model. */
  stagingFolder: '.downloads',
  /** Replaced installs are moved here before deletion. */
  trashFolder: '.trash',
  /** The install record written last into a model folder: its presence certifies the install. */
  manifestFile: 'p2pz-install.json',
  /** Working size whose derived graphs are prepared right after an install (docs/DESIGN.md §3 default). */
  prepareSize: 512,
  /** Disk space kept free beyond the download (derived graphs, install record). */
  diskMarginBytes: 64 << 20,
  /** Attempts per file (the first try included) before a download fails. */
  attempts: 6,
  /** Backoff between attempts: base · 2^(attempt−1), capped. */
  retryBaseMs: 1_000,
  retryMaxMs: 30_000,
  /** A response that delivers no byte for this long is aborted (and retried). */
  stallTimeoutMs: 30_000,
  /** Redirects followed per request (the hub redirects large files to its storage hosts). */
  maxRedirects: 5,
  /** Largest JSON answer read from the hub's API (a listing of a diffusers export is a few KB). */
  maxApiBytes: 8 << 20,
  /** Files listed by one repository at most (a page of the tree API holds up to 1000). */
  maxFiles: 5_000,
  /** The model folder names accepted (as a job's `model` names them). */
  namePattern: /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/,
  /** Folder names of the demo pack (see demo-pack.ts). */
  demoName: 'p2pz-demo',
});
