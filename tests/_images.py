"""Builders of small image files in every format and state the tests need."""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
from PIL import Image


def gradient(height: int = 12, width: int = 16, seed: int = 0) -> np.ndarray:
    """A smooth uint8 RGB image (smooth, so JPEG artefacts stay small)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = rng.uniform(40, 200, size=3)
    image = base + 40 * np.stack([xx / width, yy / height, (xx + yy) / (width + height)], -1)
    return np.clip(image, 0, 255).astype(np.uint8)


def png_bomb(path: str, side: int = 100_000) -> str:
    """A tiny PNG whose header claims ``side`` x ``side`` pixels (never decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * (side + 1))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body))
        f.write(chunk(b"IEND", b""))
    return path


def write_bad_files(folder: str) -> dict[str, str]:
    """One file of each kind of bad file; returns {kind: path}."""
    os.makedirs(folder, exist_ok=True)
    paths = {}
    paths["empty"] = os.path.join(folder, "empty.jpg")
    open(paths["empty"], "wb").close()
    good = os.path.join(folder, "_whole.jpg")
    Image.fromarray(gradient(64, 64)).save(good, quality=95)
    data = open(good, "rb").read()
    os.remove(good)
    paths["truncated"] = os.path.join(folder, "truncated.jpg")
    with open(paths["truncated"], "wb") as f:
        f.write(data[: len(data) // 2])
    paths["text"] = os.path.join(folder, "notes.png")
    with open(paths["text"], "w") as f:
        f.write("these are my notes, not an image\n")
    paths["bomb"] = png_bomb(os.path.join(folder, "bomb.png"))
    return paths


def write_formats(folder: str, image: np.ndarray | None = None) -> dict[str, str]:
    """The same picture in every supported format and mode; returns {name: path}."""
    os.makedirs(folder, exist_ok=True)
    image = gradient() if image is None else image
    rgb = Image.fromarray(image)
    out = {}

    def save(name, im, **kwargs):
        out[name] = os.path.join(folder, name)
        im.save(out[name], **kwargs)

    save("rgb.jpg", rgb, quality=95)
    save("progressive.jpg", rgb, quality=95, progressive=True)
    save("grey.jpg", rgb.convert("L"), quality=95)
    save("cmyk.jpg", rgb.convert("CMYK"), quality=95)
    save("rgb.png", rgb)
    save("grey.png", rgb.convert("L"))
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(np.full(image.shape[:2], 255, np.uint8)))
    save("rgba_opaque.png", rgba)
    save("palette.png", rgb.convert("P", palette=Image.ADAPTIVE, colors=256))
    grey16 = Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257)
    save("grey16.png", grey16)
    save("grey_alpha.png", rgb.convert("LA"))
    save("rgb.bmp", rgb)
    save("rgb.tif", rgb)
    save("lossless.webp", rgb, lossless=True)
    save("rgb.gif", rgb.convert("P", palette=Image.ADAPTIVE, colors=256))
    return out


# Multi-label targets: quadrant j of the image lit is label NAMES[j].
NAMES = ("nw", "ne", "sw", "se")


def quadrants(n, seed=0, size=16, rate=0.4):
    """Grey images with bright quadrants: label j is quadrant j lit (none allowed)."""
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, 4)) < rate).astype(int)
    X = rng.integers(0, 60, (n, size, size, 1)).astype(np.uint8)
    h = size // 2
    for j, (r, c) in enumerate([(0, 0), (0, h), (h, 0), (h, h)]):
        X[Y[:, j] == 1, r : r + h, c : c + h] += 150
    return X, Y


def as_lists(Y):
    """The label lists of the indicator matrix ``Y``."""
    return [[NAMES[j] for j in np.flatnonzero(row)] for row in Y]
