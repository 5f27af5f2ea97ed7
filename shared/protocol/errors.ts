// The closed set of error codes. Each has the HTTP status it travels with, a message a designer can
// act on, and a hint that says what to do. Clients show `message` and `hint`; they never see stacks,
// paths or tokens.
import { z } from 'zod';

interface ErrorInfo {
  readonly status: number;
  readonly message: string;
  readonly hint: string;
}

export const ERRORS = {
  E_BAD_REQUEST: { status: 400, message: 'The request is not valid.', hint: 'Check the values named in the message and try again.' },
  E_PROTOCOL_VERSION: { status: 400, message: 'The plugin and the p2pz daemon speak different protocol versions.', hint: 'Update the plugin and the daemon to the same p2pz version.' },
  E_UNKNOWN_MESSAGE: { status: 400, message: 'The daemon does not know this message type.', hint: 'Update the plugin and the daemon to the same p2pz version.' },
  // A binary event-stream message that is not a well-formed preview frame (preview-frame.ts).
  E_BAD_FRAME: { status: 502, message: 'A preview image from the p2pz daemon could not be read.', hint: 'Update the plugin and the daemon to the same p2pz version; the finished result still arrives.' },
  E_UNAUTHORIZED: { status: 401, message: 'This plugin is not paired with the p2pz daemon.', hint: 'Enter the pairing code the daemon prints (or run `p2pz pair`).' },
  E_PAIRING_INVALID: { status: 401, message: 'That pairing code is wrong or has expired.', hint: 'Type the 8-character code the daemon printed (like 7K3Q-MXR9) within 5 minutes, or run `p2pz pair` for a fresh one.' },
  E_PAIRING_RATE_LIMITED: { status: 429, message: 'Too many wrong pairing codes came from here.', hint: 'The right code still works: type the code the daemon printed exactly (like 7K3Q-MXR9), or run `p2pz pair` for a fresh one.' },
  E_FORBIDDEN_HOST: { status: 403, message: 'The request was sent to an unexpected host name.', hint: 'Connect to http://localhost:<port> or http://127.0.0.1:<port>.' },
  E_FORBIDDEN_ORIGIN: { status: 403, message: 'Requests from this web page are not allowed.', hint: 'Use p2pz from its Figma or Photopea plugin, or from the page the daemon serves.' },
  E_NOT_FOUND: { status: 404, message: 'Nothing was found here; it may have expired.', hint: 'Run the edit again.' },
  E_METHOD_NOT_ALLOWED: { status: 405, message: 'This method is not allowed here.', hint: 'Update the plugin and the daemon to the same p2pz version.' },
  E_JOB_CONFLICT: { status: 409, message: 'A different job already uses this job id.', hint: 'Submit the job with a new id.' },
  E_PAYLOAD_TOO_LARGE: { status: 413, message: 'The upload is too large.', hint: 'Export the layer at a smaller size (at most 50 MB).' },
  E_UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'This kind of upload is not accepted.', hint: 'Send JSON, or a PNG, JPEG or WebP image with its exact Content-Type.' },
  E_IMAGE_FORMAT: { status: 415, message: 'The image is not a PNG, JPEG or WebP file.', hint: 'Export the layer as PNG and try again.' },
  E_IMAGE_TOO_LARGE: { status: 413, message: 'The image has too many pixels to edit.', hint: 'Scale the layer down (at most about 64 megapixels) and try again.' },
  E_IMAGE_DECODE: { status: 422, message: 'The image could not be read; it may be damaged.', hint: 'Export the layer again as PNG and retry.' },
  E_MODEL_MISSING: { status: 424, message: 'The model this edit needs is not installed.', hint: 'Install it with `p2pz models install`, then try again.' },
  E_MODEL_INVALID: { status: 424, message: 'The installed model is damaged or incomplete.', hint: 'Run `p2pz models verify` and reinstall the model it names.' },
  E_DOWNLOAD_FAILED: { status: 502, message: 'The model download failed.', hint: 'Check the network connection and run the same `p2pz models install` command again: it resumes where it stopped.' },
  E_QUEUE_FULL: { status: 429, message: 'Too many edits are waiting already.', hint: 'Wait for the running edits to finish, or cancel some.' },
  E_RATE_LIMITED: { status: 429, message: 'Too many requests.', hint: 'Wait a few seconds and try again.' },
  E_JOB_TOO_LARGE: { status: 507, message: 'This edit needs more memory than the device has.', hint: 'Use a smaller working size or fewer steps, or close other GPU programs.' },
  E_DEVICE_OOM: { status: 507, message: 'The device ran out of memory during the edit.', hint: 'Use a smaller working size, or close other GPU programs, and retry.' },
  E_DEVICE_UNAVAILABLE: { status: 503, message: 'The requested device is not available.', hint: 'Start p2pz with --device auto to use the best device that works, or --device cpu.' },
  E_DEVICE_LOST: { status: 503, message: 'The GPU stopped responding during the edit (its driver reset it, or it was removed).', hint: 'Try again: p2pz has restarted its engine. If it keeps happening, start p2pz with --device cpu.' },
  E_DEVICE_FAILED: { status: 500, message: 'The GPU provider failed while running the edit.', hint: 'Try again: p2pz has restarted its engine. If it keeps failing, start p2pz with --device cpu and report the daemon log.' },
  E_WORKER_CRASHED: { status: 500, message: 'The p2pz engine stopped unexpectedly during this edit.', hint: 'Try again; if it keeps failing, check `p2pz doctor` or the daemon log.' },
  E_ENGINE_UNAVAILABLE: { status: 503, message: 'The p2pz engine keeps crashing and is paused.', hint: 'Restart the daemon; if it keeps failing, check the daemon log.' },
  E_TIMEOUT: { status: 504, message: 'The operation took too long and was stopped.', hint: 'Try a smaller image, or try again.' },
  E_SHUTTING_DOWN: { status: 503, message: 'The p2pz daemon is shutting down.', hint: 'Start it again with `npm start` (or `p2pz serve`).' },
  E_UNSUPPORTED_OP: { status: 422, message: 'The model contains an operation p2pz cannot differentiate.', hint: 'Use a Stable Diffusion 1.x ONNX export from diffusers or optimum.' },
  // Refusals at start when listening beyond this machine (p2pz serve --listen; docs/TEAM.md).
  E_LISTEN_REFUSED: { status: 400, message: 'The daemon refuses to listen there.', hint: 'Use the default 127.0.0.1, or pass --listen ADDR[:PORT] with TLS if other machines must reach this daemon (docs/TEAM.md).' },
  E_TLS_REQUIRED: { status: 400, message: 'Listening beyond this machine needs TLS.', hint: 'Pass --tls-cert FILE --tls-key FILE, or --insecure-behind-proxy when a reverse proxy in front of the daemon terminates TLS (docs/TEAM.md, "Behind a reverse proxy").' },
  E_TLS_INCOMPLETE: { status: 400, message: 'TLS needs both a certificate and its private key.', hint: 'Pass both --tls-cert FILE and --tls-key FILE (PEM files).' },
  E_TLS_UNREADABLE: { status: 400, message: 'The TLS certificate or key could not be read.', hint: 'Give PEM files this user can read: a certificate (BEGIN CERTIFICATE) and an unencrypted private key (BEGIN PRIVATE KEY); decrypt a key with `openssl pkey -in key.pem -out plain.pem`.' },
  E_TLS_MISMATCH: { status: 400, message: 'The TLS private key does not belong to the certificate.', hint: 'Pass the key the certificate was issued for: `openssl x509 -noout -pubkey -in cert.pem` and `openssl pkey -pubout -in key.pem` must print the same key.' },
  E_INTERNAL: { status: 500, message: 'Something went wrong inside the p2pz daemon.', hint: 'Try again; if it keeps happening, report it with the daemon log.' },
} as const satisfies Record<string, ErrorInfo>;

export type ErrorCode = keyof typeof ERRORS;
export const ErrorCodeSchema = z.enum(Object.keys(ERRORS) as [ErrorCode, ...ErrorCode[]]);

/** The body of every error: `{code, message, hint?}`; `message` may add a specific detail. */
export const ErrorBody = z.object({
  code: ErrorCodeSchema,
  message: z.string().max(2000),
  hint: z.string().max(2000).optional(),
});
export type ErrorBody = z.infer<typeof ErrorBody>;

/** An error that crosses a boundary. `detail` is appended to the designer-facing message; it must
 *  never hold paths, tokens or stack traces. */
export class P2pzError extends Error {
  readonly code: ErrorCode;
  readonly hint: string;
  readonly status: number;
  constructor(code: ErrorCode, detail?: string, hint?: string) {
    const info = ERRORS[code];
    super(detail ? `${info.message} ${detail}` : info.message);
    this.name = 'P2pzError';
    this.code = code;
    this.hint = hint ?? info.hint;
    this.status = info.status;
  }
  toBody(): ErrorBody {
    return { code: this.code, message: this.message, hint: this.hint };
  }
  static fromBody(body: ErrorBody): P2pzError {
    const e = new P2pzError(body.code, undefined, body.hint);
    e.message = body.message;
    return e;
  }
}
