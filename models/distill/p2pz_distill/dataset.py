"""The pairs dataset written by `p2pz distill pairs` (daemon/distill/manifest.ts is the schema).

DATASET/manifest.json holds the direction, the diffusion model, the pix2pix-zero settings and one
entry per source image; entries with status "kept" name two PNGs at the working size (the source x
and the pipeline's edit y) with their SHA-256. Training samples are aligned random crops of (x, y)
with an optional shared horizontal flip, as tensors [3,c,c] in [-1,1] (x/127.5 - 1).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from .png import read_png_rgb

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


class DatasetError(ValueError):
    pass


@dataclass(frozen=True)
class Pair:
    input: str
    output: str
    input_hash: str
    output_hash: str


@dataclass(frozen=True)
class PairsManifest:
    root: str
    source: str
    target: str
    model: str
    size: int
    settings: dict
    pairs: tuple

    @property
    def data_hash(self) -> str:
        """SHA-256 over the kept pairs' file hashes, in manifest order: names the training data."""
        h = hashlib.sha256()
        for p in self.pairs:
            h.update(f"{p.input_hash}:{p.output_hash}\n".encode())
        return h.hexdigest()


def read_manifest(root: str) -> PairsManifest:
    path = os.path.join(root, MANIFEST)
    try:
        with open(path, "r", encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"no {MANIFEST} in {root}: make one with `p2pz distill pairs`") from None
    except json.JSONDecodeError as e:
        raise DatasetError(f"{MANIFEST} is not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("v") != MANIFEST_VERSION:
        raise DatasetError(f"{MANIFEST} is not a version {MANIFEST_VERSION} pairs manifest")
    try:
        settings = dict(doc["settings"])
        pairs = tuple(
            Pair(_inside(root, e["input"]), _inside(root, e["output"]), str(e["inputHash"]), str(e["outputHash"]))
            for e in doc["pairs"]
            if e.get("status") == "kept"
        )
        manifest = PairsManifest(
            root=root,
            source=str(doc["source"]),
            target=str(doc["target"]),
            model=str(doc["model"]),
            size=int(settings["size"]),
            settings=settings,
            pairs=pairs,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{MANIFEST} is missing or has a wrong field ({e})") from None
    if not manifest.pairs:
        raise DatasetError(f"{MANIFEST} lists no kept pairs: nothing to train on")
    return manifest


def _inside(root: str, rel: str) -> str:
    """A manifest path, which must stay inside the dataset folder."""
    full = os.path.realpath(os.path.join(root, rel))
    if not full.startswith(os.path.realpath(root) + os.sep):
        raise DatasetError(f"manifest path escapes the dataset folder: {rel!r}")
    return full


def _read_verified(path: str, expected: str) -> np.ndarray:
    with open(path, "rb") as f:
        data = f.read()
    if hashlib.sha256(data).hexdigest() != expected:
        raise DatasetError(f"{os.path.basename(path)} does not match its hash in the manifest")
    return read_png_rgb(path)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> [3,H,W] float32 in [-1,1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div(127.5).sub(1.0)


class PairsDataset(torch.utils.data.Dataset):
    """Aligned (x, y) crops. Images are decoded once, verified against their hashes, and cached."""

    def __init__(self, manifest: PairsManifest, crop: int, flip: bool = True, seed: int = 0):
        self.manifest = manifest
        self.crop = crop
        self.flip = flip
        self.rng = random.Random(seed)
        self.cache: dict = {}

    def __len__(self) -> int:
        return len(self.manifest.pairs)

    def images(self, index: int):
        if index not in self.cache:
            p = self.manifest.pairs[index]
            x = _read_verified(p.input, p.input_hash)
            y = _read_verified(p.output, p.output_hash)
            if x.shape != y.shape:
                raise DatasetError(f"pair {index}: input {x.shape[:2]} and output {y.shape[:2]} differ in size")
            if min(x.shape[0], x.shape[1]) < self.crop:
                raise DatasetError(f"pair {index}: {x.shape[1]}x{x.shape[0]} is smaller than the crop {self.crop}")
            self.cache[index] = (x, y)
        return self.cache[index]

    def __getitem__(self, index: int):
        x, y = self.images(index)
        h, w = x.shape[:2]
        top = self.rng.randint(0, h - self.crop)
        left = self.rng.randint(0, w - self.crop)
        xs = x[top : top + self.crop, left : left + self.crop]
        ys = y[top : top + self.crop, left : left + self.crop]
        if self.flip and self.rng.random() < 0.5:
            xs, ys = xs[:, ::-1], ys[:, ::-1]
        return to_tensor(xs), to_tensor(ys)
