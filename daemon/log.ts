// The daemon's logger: one line per event, `time level event key=value ...`, to a sink (stderr by
// default). It is built so that the log can be pasted into a bug report: values are scrubbed of
// bearer tokens and absolute paths, errors are logged as their code and message (never a stack), and
// callers pass only named fields (never the environment). R21.
import { P2pzError } from '../shared/protocol/index.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogValue = string | number | boolean | null | undefined;
export type LogFields = Readonly<Record<string, LogValue>>;

export interface Logger {
  debug(event: string, fields?: LogFields): void;
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
}

export const LOG_DEFAULTS = Object.freeze({
  /** Lowest level written. `P2PZ_LOG=debug` lowers it from the CLI. */
  level: 'info' as LogLevel,
  /** Longest value written; longer values are cut (a log line never carries a payload). */
  maxValueLength: 300,
});

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Bearer tokens this daemon issues (`p2pz_` + base64url) and any `Bearer ...` credential. */
const TOKEN_RE = /p2pz_[A-Za-z0-9_-]{8,}|Bearer\s+\S+/g;
/** Absolute POSIX paths (a slash followed by a path segment) and Windows drive or UNC paths. */
const PATH_RE = /(?<![A-Za-z0-9])[A-Za-z]:[\\/][^\s"'`]*|\\\\[^\s"'`]+|(?<![A-Za-z0-9_.:~/-])\/(?:[A-Za-z0-9_.@~+-]+\/?)+/g;

/** Removes tokens and absolute paths from a string that may reach a log or a client. */
export function scrub(text: string): string {
  return text.replace(TOKEN_RE, '<redacted>').replace(PATH_RE, '<path>');
}

/** An error as a loggable pair: its p2pz code (or its class name) and its scrubbed message. */
export function describeError(err: unknown): { error: string; detail: string } {
  if (err instanceof P2pzError) return { error: err.code, detail: scrub(err.message) };
  if (err instanceof Error) {
    const code = (err as Error & { code?: unknown }).code;
    return { error: typeof code === 'string' ? code : err.name, detail: scrub(err.message) };
  }
  return { error: 'unknown', detail: scrub(String(err)) };
}

function formatValue(value: LogValue, max: number): string {
  const text = scrub(String(value));
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
  return /[\s"=]/.test(cut) || cut === '' ? JSON.stringify(cut) : cut;
}

export interface LoggerOptions {
  level?: LogLevel;
  /** Receives each finished line (without newline). */
  sink?: (line: string) => void;
  now?: () => Date;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const min = RANK[options.level ?? LOG_DEFAULTS.level];
  const sink = options.sink ?? ((line: string) => process.stderr.write(`${line}\n`));
  const now = options.now ?? (() => new Date());
  const write = (level: LogLevel, event: string, fields?: LogFields): void => {
    if (RANK[level] < min) return;
    const parts = [now().toISOString(), level, scrub(event)];
    for (const [key, value] of Object.entries(fields ?? {})) {
      if (value === undefined) continue;
      parts.push(`${key}=${formatValue(value, LOG_DEFAULTS.maxValueLength)}`);
    }
    sink(parts.join(' '));
  };
  return {
    debug: (e, f) => write('debug', e, f),
    info: (e, f) => write('info', e, f),
    warn: (e, f) => write('warn', e, f),
    error: (e, f) => write('error', e, f),
  };
}

/** A logger that writes nothing (tests that do not look at the log). */
export const silentLogger: Logger = Object.freeze({ debug() {}, info() {}, warn() {}, error() {} });

export function parseLogLevel(value: string | undefined): LogLevel | undefined {
  return value === 'debug' || value === 'info' || value === 'warn' || value === 'error' ? value : undefined;
}
