#!/usr/bin/env bash
# Runs on the lent GPU machine, in the repository root, with .device/ carried (scripts/device/pack.sh):
#   run: bash scripts/device/run-on-device.sh [bench options]   (carry: [".device"])
# It unpacks the pack into a temporary folder (never into /), puts the carried Vulkan loader on the
# library path, points the loader at the NVIDIA driver's manifest where the image keeps it, and runs
# the benchmark (scripts/device/bench.ts), which prints the table for docs/BENCHMARKS.md. Also runs
# on a machine without a GPU: with VK_ICD_FILENAMES naming a software device (SwiftShader) and small
# options (--preset tiny --size 64 --steps 2); test/scripts/device-bench.test.ts runs the bundled bench so.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d /tmp/p2pz-device.XXXXXX)
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xJf .device/p2pz-device.tar.xz
for deb in .device/gl/*.deb; do dpkg -x "$deb" "$work/gl"; done
export LD_LIBRARY_PATH="$work/gl/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}" ] && [ -f "$nvidia_icd" ]; then export VK_DRIVER_FILES="$nvidia_icd"; fi
export XDG_RUNTIME_DIR="$work/xdg"
mkdir -m 700 -p "$XDG_RUNTIME_DIR"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
"$work/bin/node" "$work/dist/device-bench.mjs" "$@"
