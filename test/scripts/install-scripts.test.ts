// A fresh clone's plain `npm install` must work with only the npm registry reachable, and
// `npm run gpu:install` must still fetch the CUDA provider. What npm and onnxruntime-node do, and
// where each fact was learned:
// - npm 11 runs dependency install scripts during `npm install` (seen here with npm 11.19.1: a fresh
//   clone's install ran onnxruntime-node's postinstall, which tried api.nuget.org and failed the
//   install with ENOTFOUND).
// - npm ≥ 11.16 reads an `allowScripts` object in package.json; a dependency mapped to `false` has
//   its install scripts skipped, packages not covered are listed by `npm install-scripts ls` and
//   warned about after an install (npm docs, using-npm/config.md `strict-allow-scripts` and
//   commands/npm-install-scripts.md; npm/cli PR #9415 "Phase 1 of allowScripts"). npm 12 blocks
//   uncovered scripts by default (npm/cli issue #9750).
// - A project `.npmrc` with `onnxruntime-node-install=skip` also skips it, but npm 11.19 prints
//   "Unknown project config … This will stop working in the next major version of npm" on every
//   npm command (@npmcli/config lib/index.js checkUnknown), and npm exports it to every script as
//   npm_config_onnxruntime_node_install (@npmcli/config lib/set-envs.js), which onnxruntime-node's
//   parseInstallFlag (script/install-utils.js, 1.30.0) prefers to the command line: the old
//   `gpu:install` became a no-op that exited 0 (seen here).
// - onnxruntime-node 1.30.0's parseInstallFlag returns nothing for `=cuda12`, and install.js then exits
//   0 when it runs as a script of the local project: the old `gpu:install` never fetched (seen here).
// The tests run the real npm and the real onnxruntime-node flag parser.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain .mjs script without type declarations
import { gpuInstallEnv } from '../../scripts/gpu-install.mjs';

const ROOT = join(import.meta.dirname, '../..');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { allowScripts?: Record<string, boolean>; scripts: Record<string, string> };

/** Installed packages (node_modules, scoped included) whose package.json has an install-time script. */
function packagesWithInstallScripts(): string[] {
  const found: string[] = [];
  const visit = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      if (name.startsWith('.')) continue;
      if (name.startsWith('@')) {
        visit(join(dir, name));
        continue;
      }
      const file = join(dir, name, 'package.json');
      if (!existsSync(file)) continue;
      const manifest = JSON.parse(readFileSync(file, 'utf8')) as { name: string; scripts?: Record<string, string> };
      const s = manifest.scripts ?? {};
      if (s['preinstall'] ?? s['install'] ?? s['postinstall']) found.push(manifest.name);
      const nested = join(dir, name, 'node_modules');
      if (existsSync(nested)) visit(nested);
    }
  };
  visit(join(ROOT, 'node_modules'));
  return [...new Set(found)].sort();
}

describe('npm install with only the npm registry', () => {
  it("package.json denies onnxruntime-node's install script and reviews every other one", () => {
    expect(pkg.allowScripts?.['onnxruntime-node']).toBe(false);
    const uncovered = packagesWithInstallScripts().filter((name) => pkg.allowScripts?.[name] === undefined);
    expect(uncovered).toEqual([]);
    // No project .npmrc: npm 11 warns about unknown keys on every command.
    expect(existsSync(join(ROOT, '.npmrc'))).toBe(false);
  });

  it('the real npm finds no install script left unreviewed', () => {
    const out = execFileSync('npm', ['install-scripts', 'ls'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
    expect(out).toMatch(/No packages with unreviewed install scripts/);
  });
});

describe('npm run gpu:install', () => {
  // The real `npm run gpu:install` with `skip` configured both ways, and every HTTPS request sent to a
  // closed local port (onnxruntime-node's install.js bootstraps global-agent, which honours
  // GLOBAL_AGENT_HTTPS_PROXY): the install script must try to download (and fail here), not exit 0.
  it('fetches the CUDA provider even where skip is configured (environment or npm config)', () => {
    const run = spawnSync('npm', ['run', 'gpu:install'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 60_000,
      env: {
        PATH: process.env['PATH'] ?? '',
        HOME: process.env['HOME'] ?? '',
        ONNXRUNTIME_NODE_INSTALL: 'skip',
        npm_config_onnxruntime_node_install: 'skip',
        GLOBAL_AGENT_HTTPS_PROXY: 'http://127.0.0.1:9',
      },
    });
    expect(run.status).not.toBe(0);
    expect(`${run.stdout}${run.stderr}`).toMatch(/ECONNREFUSED 127\.0\.0\.1:9/);
  });

  it('leaves nothing of a skip behind in the environment it passes on', () => {
    const env = gpuInstallEnv({ ONNXRUNTIME_NODE_INSTALL: 'skip', npm_config_onnxruntime_node_install: 'skip', ONNXRUNTIME_NODE_INSTALL_CUDA: 'skip', KEEP: 'x' }) as Record<string, string>;
    expect(env).toEqual({ ONNXRUNTIME_NODE_INSTALL: 'true', KEEP: 'x' });
  });
});
