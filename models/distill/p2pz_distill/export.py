"""Exports a trained generator with exactly the runtime's contract (daemon/pipeline/gan-preview.ts):

  input  `image`        float32 [1,3,H,W] in [-1,1], H and W dynamic
  output `output_image` float32 [1,3,H,W] in [-1,1], the same H and W

Any H and W work: the exported graph pads the input at the bottom and right (edge replication) up to
the generator's downsampling multiple m, runs G, and crops back: y = G(pad_m(x))[:, :, :H, :W].
Also writes meta.json (the registry's GanMeta: v, source, target, size, from, dataHash) and a check
pair export-check/{input,output}.npy (float32, a non-square size) computed by PyTorch, so the ONNX
file can be compared against PyTorch with onnxruntime.
"""
from __future__ import annotations

import inspect
import json
import os

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

INPUT_NAME = "image"
OUTPUT_NAME = "output_image"
OPSET = 17
GENERATOR_FILE = "generator.onnx"
META_FILE = "meta.json"
CHECK_DIR = "export-check"


class PaddedGenerator(nn.Module):
    def __init__(self, generator: nn.Module, multiple: int):
        super().__init__()
        self.generator = generator
        self.multiple = multiple

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[2], image.shape[3]
        m = self.multiple
        pad_h = (m - h % m) % m
        pad_w = (m - w % m) % m
        x = F.pad(image, (0, pad_w, 0, pad_h), mode="replicate")
        return self.generator(x)[:, :, :h, :w]


def export_onnx(generator: nn.Module, path: str, sample_size: int = 64) -> None:
    """Writes the generator (in eval mode, on the CPU) as a single ONNX file."""
    model = PaddedGenerator(generator, int(getattr(generator, "multiple", 1))).cpu().eval()
    dummy = torch.zeros(1, 3, sample_size, sample_size)
    kwargs = dict(
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {2: "height", 3: "width"}, OUTPUT_NAME: {2: "height", 3: "width"}},
        opset_version=OPSET,
        do_constant_folding=True,
    )
    # PyTorch >= 2.5 has a second (dynamo) exporter, the default from 2.9; the TorchScript one is
    # what supports dynamic_axes here on every version from 1.13.
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    tmp = f"{path}.tmp"
    with torch.no_grad():
        torch.onnx.export(model, (dummy,), tmp, **kwargs)
    os.replace(tmp, path)


def write_export_check(generator: nn.Module, out_dir: str, height: int, width: int, seed: int = 0) -> None:
    """PyTorch's output for a seeded input of an odd, non-square size (exercises the padding)."""
    model = PaddedGenerator(generator, int(getattr(generator, "multiple", 1))).cpu().eval()
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, height, width, generator=g) * 2 - 1
    with torch.no_grad():
        y = model(x)
    folder = os.path.join(out_dir, CHECK_DIR)
    os.makedirs(folder, exist_ok=True)
    np.save(os.path.join(folder, "input.npy"), x.numpy().astype("<f4"))
    np.save(os.path.join(folder, "output.npy"), y.numpy().astype("<f4"))


def write_meta(out_dir: str, source: str, target: str, size: int, model: str, settings: dict, data_hash: str) -> dict:
    meta = {
        "v": 1,
        "source": source,
        "target": target,
        "size": int(size),
        "from": {"model": model[:200], "settings": settings},
        "dataHash": f"sha256:{data_hash}",
    }
    tmp = os.path.join(out_dir, META_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    os.replace(tmp, os.path.join(out_dir, META_FILE))
    return meta
