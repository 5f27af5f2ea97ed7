// `npm run gpu:install`: fetches onnxruntime-node's CUDA 12 provider (NuGet
// Microsoft.ML.OnnxRuntime.Gpu.Linux) by running the package's own install script with the flag set.
//
// Why a script and not `node …/install.js --onnxruntime-node-install=cuda12` in package.json (all seen
// with onnxruntime-node 1.30.0, script/install-utils.js parseInstallFlag, and npm 11.19.1):
// - parseInstallFlag returns nothing for the value `cuda12` (its `default:` branch has no return),
//   and install.js then exits 0 at once when it runs as a script of the local project
//   (npm_package_json beside npm_config_local_prefix): the old `npm run gpu:install` never fetched.
// - it reads ONNXRUNTIME_NODE_INSTALL, then npm_config_onnxruntime_node_install, and only then the
//   command line; npm exports non-default config (a `.npmrc` entry too) to scripts as npm_config_*
//   (@npmcli/config lib/set-envs.js), so a configured `skip` silenced the flag.
// Here ONNXRUNTIME_NODE_INSTALL=true ("install the files this platform does not bundle": cuda12 on
// linux/x64) is set and every other source of the flag removed, so this command always fetches.
// (A plain `npm install` does not: package.json's `allowScripts` denies onnxruntime-node's
// postinstall; see the README's set-up notes.)
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

/** The environment for onnxruntime-node's install script: fetch the CUDA provider, whatever skip was configured. */
export function gpuInstallEnv(env) {
  const out = { ...env, ONNXRUNTIME_NODE_INSTALL: 'true' };
  for (const key of Object.keys(out)) {
    const k = key.toLowerCase();
    if (k === 'onnxruntime_node_install_cuda' || k === 'npm_config_onnxruntime_node_install' || k === 'npm_config_onnxruntime_node_install_cuda') {
      delete out[key];
    }
  }
  return out;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  if (`${process.platform}/${process.arch}` !== 'linux/x64') {
    console.error(`onnxruntime-node publishes its CUDA provider for linux/x64 only; this is ${process.platform}/${process.arch}.`);
  }
  const script = createRequire(import.meta.url).resolve('onnxruntime-node/script/install.js');
  const run = spawnSync(process.execPath, [script], { stdio: 'inherit', env: gpuInstallEnv(process.env) });
  process.exitCode = run.status ?? 1;
}
