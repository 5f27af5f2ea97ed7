"""Reads 8-bit PNGs into HxWx3 uint8 arrays.

Pillow is used when it is installed. Otherwise the file is decoded here with zlib and numpy
(PNG 1.2: IHDR, IDAT chunks, zlib stream, one filter byte per scanline: None, Sub, Up, Average,
Paeth), which covers what `p2pz distill pairs` writes: 8-bit grayscale, RGB or RGBA, not interlaced.
Alpha is dropped (the pipeline edits RGB and keeps alpha aside).
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

try:  # optional: faster, and reads every PNG flavour
    from PIL import Image as _PilImage  # type: ignore
except ImportError:  # pragma: no cover - depends on the machine
    _PilImage = None

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# colour type -> samples per pixel
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


class PngError(ValueError):
    pass


def read_png_rgb(path: str) -> np.ndarray:
    """The image at `path` as HxWx3 uint8 (gray is repeated to 3 channels, alpha dropped)."""
    if _PilImage is not None:
        with _PilImage.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    with open(path, "rb") as f:
        return decode_png_rgb(f.read())


def decode_png_rgb(data: bytes) -> np.ndarray:
    if data[:8] != _SIGNATURE:
        raise PngError("not a PNG file")
    pos = 8
    header = None
    idat = []
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None or not idat:
        raise PngError("PNG without IHDR or IDAT")
    width, height, depth, colour, _compression, _filter, interlace = header
    if depth != 8 or colour not in _CHANNELS or interlace != 0:
        raise PngError(
            f"unsupported PNG (bit depth {depth}, colour type {colour}, interlace {interlace}); "
            "install Pillow to read it"
        )
    bpp = _CHANNELS[colour]
    stride = width * bpp
    raw = zlib.decompress(b"".join(idat))
    if len(raw) < height * (stride + 1):
        raise PngError("truncated PNG image data")
    pixels = _unfilter(raw, height, stride, bpp).reshape(height, width, bpp)
    if bpp <= 2:
        return np.repeat(pixels[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, :3])


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> np.ndarray:
    """Undoes the per-scanline filters (PNG 1.2 §6). Recon(x) = Filt(x) + predictor, mod 256, where
    a = left (bpp bytes back), b = above, c = above-left."""
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int64)
    pos = 0
    for y in range(height):
        ftype = raw[pos]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=pos + 1).astype(np.int64)
        pos += stride + 1
        if ftype == 0:  # None
            cur = line
        elif ftype == 1:  # Sub: running sum along the row, per byte of the pixel
            cur = (np.cumsum(line.reshape(-1, bpp), axis=0) % 256).reshape(-1)
        elif ftype == 2:  # Up
            cur = (line + prev) % 256
        elif ftype in (3, 4):  # Average, Paeth: sequential along the row
            cur = _unfilter_sequential(ftype, line.tolist(), prev.tolist(), bpp)
        else:
            raise PngError(f"unknown PNG filter type {ftype}")
        out[y] = cur
        prev = np.asarray(cur, dtype=np.int64)
    return out


def _unfilter_sequential(ftype: int, line: list, prev: list, bpp: int) -> np.ndarray:
    cur = [0] * len(line)
    for i, v in enumerate(line):
        a = cur[i - bpp] if i >= bpp else 0
        b = prev[i]
        if ftype == 3:
            cur[i] = (v + ((a + b) >> 1)) & 0xFF
        else:
            c = prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[i] = (v + pred) & 0xFF
    return np.asarray(cur, dtype=np.int64)
