// The daemon's logger: one line per event, `time level event key=value ...`, to a sink (stderr by
// default). It is built so that the log can be pasted into a bug report: values are scrubbed of
// bearer tokens and absolute paths, errors are logged as their code and message (never a stack), and
// callers pass only named fields (never the environment). docs/SECURITY.md §R21, §Path scrubbing.
import { existsSync, realpathSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { P2pzError } from '../shared/protocol/index.js';
import { defaultHome } from './config.js';

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

// The generic path patterns, for paths under no known root. A segment is letters and digits of any
// script and a few punctuation marks; a segment may contain single spaces only when a separator
// follows it ("/Users/John Smith/x"), so "at /tmp/x failed" still ends the path at "x".
const SEG = String.raw`[\p{L}\p{N}\p{M}_.@~+%,=-]+`;
const SPACED = String.raw`${SEG}(?: ${SEG})*`;
/** `file:` URLs, whatever they point at. */
const FILE_URL = String.raw`\bfile:\/\/[^\s"'\x60<>]*`;
/** Windows drive paths (C:\… or C:/…) and UNC paths (\\server\share\…). */
const WIN_SEG = String.raw`[^\s"'\x60<>\\/:*?|]+`;
const WINDOWS = String.raw`(?<![\p{L}\p{N}])[A-Za-z]:[\\/](?:${WIN_SEG}(?: ${WIN_SEG})*(?=[\\/])[\\/]|${WIN_SEG}[\\/]?)*|\\\\(?:${WIN_SEG}(?: ${WIN_SEG})*(?=\\)\\|${WIN_SEG}\\?)+`;
/** Absolute POSIX paths: a slash that starts no URL, relative path or placeholder, then segments. */
const POSIX = String.raw`(?<![\p{L}\p{N}\p{M}_.:~/<>-])\/(?:${SPACED}(?=\/)\/|${SEG}\/?)+`;
const PATH_RE = new RegExp(`${FILE_URL}|${WINDOWS}|${POSIX}`, 'gu');

/** A folder whose every mention is replaced by its label (`<data>`, `<home>`, …), before the generic
 *  patterns run: it catches the paths those patterns cannot delimit (spaces, any script). */
export interface ScrubRoot {
  readonly label: string;
  readonly path: string;
}

const extraRoots: ScrubRoot[] = [];
let cachedRoots: { readonly key: number; readonly re: RegExp | undefined; readonly labels: ReadonlyMap<string, string> } | undefined;

/** The checkout (or installed package) holding this code: the nearest folder with a package.json. */
function packageRoot(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i += 1) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return undefined;
}

/** The roots every process of ours knows: its data folder, the user's home, the checkout, temp. */
export function defaultScrubRoots(): ScrubRoot[] {
  const roots: ScrubRoot[] = [];
  const add = (label: string, path: () => string | undefined): void => {
    try {
      const value = path();
      if (value !== undefined) roots.push({ label, path: value });
    } catch {
      // no such folder here (a home-less service account, …): nothing to replace
    }
  };
  add('<data>', () => defaultHome());
  add('<home>', () => homedir());
  add('<checkout>', packageRoot);
  add('<temp>', () => tmpdir());
  return roots;
}

/** Adds a folder to replace in everything this process scrubs (the daemon's data folder, the
 *  worker's models and cache folders). */
export function addScrubRoot(label: string, path: string): void {
  if (extraRoots.some((r) => r.label === label && r.path === path)) return;
  extraRoots.push({ label, path });
  cachedRoots = undefined;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Every spelling of each root: as given, its real path, with / for \ (Windows), and as a file: URL
 *  (percent-encoded, as pathToFileURL writes it). Too short or too general roots ("/", "C:\") are skipped. */
function rootSpellings(roots: readonly ScrubRoot[]): Map<string, string> {
  const labels = new Map<string, string>();
  for (const root of roots) {
    const forms = new Set<string>([root.path]);
    try {
      forms.add(realpathSync.native(root.path));
    } catch {
      // not on this disk: the path as given is all there is
    }
    for (const form of [...forms]) {
      const trimmed = form.replace(/[\\/]+$/, '');
      if (trimmed.length < 4 || /^[A-Za-z]:$/.test(trimmed)) continue;
      const spellings = [trimmed, trimmed.replaceAll('\\', '/')];
      try {
        spellings.push(pathToFileURL(trimmed).href, decodeURI(pathToFileURL(trimmed).href));
      } catch {
        // not a path pathToFileURL understands
      }
      for (const spelling of spellings) if (!labels.has(spelling)) labels.set(spelling, root.label);
    }
  }
  return labels;
}

function rootsRegExp(roots: readonly ScrubRoot[]): { re: RegExp | undefined; labels: ReadonlyMap<string, string> } {
  const labels = rootSpellings(roots);
  // Longest first, so that the data folder wins over the home folder that holds it.
  const alternatives = [...labels.keys()].sort((a, b) => b.length - a.length).map(escapeRegExp);
  if (alternatives.length === 0) return { re: undefined, labels };
  // A root ends at a separator or where no path character follows ("/home/bob" is not in "/home/bobby").
  return { re: new RegExp(`(?:${alternatives.join('|')})(?![\\p{L}\\p{N}\\p{M}_.@~+-])`, 'gu'), labels };
}

function processRoots(): { re: RegExp | undefined; labels: ReadonlyMap<string, string> } {
  const key = extraRoots.length;
  if (cachedRoots?.key !== key) cachedRoots = { key, ...rootsRegExp([...extraRoots, ...defaultScrubRoots()]) };
  return cachedRoots;
}

/**
 * Removes tokens and absolute paths from a string that may reach a log or a client: known roots are
 * replaced by their label wherever they appear (`<data>/models/x.onnx`), then any other absolute path
 * or file: URL becomes `<path>`. `roots` replaces this process's roots (tests).
 */
export function scrub(text: string, roots?: readonly ScrubRoot[]): string {
  const known = roots === undefined ? processRoots() : rootsRegExp(roots);
  let out = text.replace(TOKEN_RE, '<redacted>');
  if (known.re !== undefined) out = out.replace(known.re, (m) => known.labels.get(m) ?? '<path>');
  return out.replace(PATH_RE, '<path>');
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
