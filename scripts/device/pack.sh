#!/usr/bin/env bash
# `npm run device:pack`: packs what a benchmark run on the lent GPU machine needs into .device/
# (git-ignored; name it in the device tool's `carry`). That machine has no Node.js and no network,
# and what travels is at most 64 MiB, so the pack holds only:
#   p2pz-device.tar.xz   this machine's `node` binary; dist/device-bench.mjs (scripts/device/bench.ts
#                        bundled with every pure-JS dependency); the Linux x64 parts of the native
#                        packages it loads (onnxruntime-node's linux/x64 binding, sharp and libvips)
#   gl/*.deb             the Vulkan loader (Debian's libvulkan1), unpacked there beside the pack
#                        (run-on-device.sh), as the device tool's README, "Headless rendering", says
# It fails when the pack exceeds the limit.
set -euo pipefail
cd "$(dirname "$0")/../.."
LIMIT_MIB=64
out=.device
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
rm -rf "$out"
mkdir -p "$out/gl" "$stage/bin" "$stage/dist" "$stage/node_modules/@img"

# 1. The benchmark, bundled (onnxruntime-node and sharp stay external: they are native).
npx esbuild scripts/device/bench.ts --bundle --platform=node --format=esm --target=node20 \
  --external:onnxruntime-node --external:sharp --log-level=warning \
  --banner:js="import { createRequire as __p2pzRequire } from 'node:module'; const require = __p2pzRequire(import.meta.url);" \
  --outfile="$stage/dist/device-bench.mjs"

# 2. The Linux x64 parts of the native packages and their JS dependencies.
nm=node_modules
ort="$stage/$nm/onnxruntime-node"
mkdir -p "$ort/bin/napi-v6/linux"
cp "$nm/onnxruntime-node/package.json" "$ort/"
cp -r "$nm/onnxruntime-node/dist" "$ort/"
cp -r "$nm/onnxruntime-node/bin/napi-v6/linux/x64" "$ort/bin/napi-v6/linux/"
cp -r "$nm/onnxruntime-common" "$stage/$nm/"
for p in sharp detect-libc semver @img/colour @img/sharp-linux-x64 @img/sharp-libvips-linux-x64; do
  [ -d "$nm/$p" ] && cp -r "$nm/$p" "$stage/$nm/$p"
done
# onnxruntime-node is CommonJS and re-exports onnxruntime-common's CJS build: keep dist/cjs.
rm -rf "$stage/$nm/sharp/src" "$stage/$nm/onnxruntime-common/lib"

# 3. This machine's node binary (statically linked but for glibc and libstdc++).
cp "$(command -v node)" "$stage/bin/node"

tar -C "$stage" -cf - bin dist node_modules | xz -6 -T1 > "$out/p2pz-device.tar.xz"

# 4. The Vulkan loader.
if ls /work/.library/device/*.deb >/dev/null 2>&1; then cp /work/.library/device/libvulkan1_*.deb "$out/gl/" 2>/dev/null || true; fi
if ! ls "$out"/gl/libvulkan1_*.deb >/dev/null 2>&1; then
  (cd "$out/gl" && apt-get -qq -oAPT::Architecture=amd64 download libvulkan1 2>/dev/null)
fi

bytes=$(du -cb "$out"/p2pz-device.tar.xz "$out"/gl/*.deb | tail -1 | cut -f1)
mib=$(( (bytes + 1048575) / 1048576 ))
echo "device pack: $out ($mib MiB of $LIMIT_MIB)"
ls -la "$out" "$out/gl"
if [ "$mib" -gt "$LIMIT_MIB" ]; then echo "device pack exceeds $LIMIT_MIB MiB" >&2; exit 1; fi
