"""Images sent to ``imgclf serve``, from memory to the network's input.

Everything here works on bytes held in memory: an upload is decoded from its
bytes, a zip archive's members are read into memory one at a time within
bounds (never extracted, and their names never used as paths), and what goes
back to the browser (a Grad-CAM overlay) is PNG bytes. A problem with one
upload raises :class:`UploadError` with a sentence for the person who sent
it; the server turns it into that file's error and a 4xx answer.
"""

from __future__ import annotations

import base64
import io
import warnings
import zipfile
import zlib
from typing import NamedTuple

import numpy as np

from ._backend import get_tf
from ._decode import finish, pixels_from_memory
from ._scan import is_image_name, max_pixels

#: Bytes in one uploaded file (an image, or a zip of images), by default.
MAX_UPLOAD_BYTES = 20 * 2**20
#: Bytes in one request (all its files), by default.
MAX_REQUEST_BYTES = 100 * 2**20
#: Images in one request (a zip's members count one each), by default.
MAX_IMAGES = 500
#: The side, in pixels, Grad-CAM overlays are drawn at (at least).
OVERLAY_SIDE = 192


class UploadError(ValueError):
    """An upload that cannot be used; the message says why, for its sender."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


class Upload(NamedTuple):
    """One image to predict: its name as sent (only shown) and its bytes."""

    name: str
    data: bytes


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


def is_zip(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04"


def zip_images(name: str, data: bytes, *, max_bytes: int, max_images: int) -> list[Upload]:
    """The image members of the zip archive ``data`` (by their names'
    extensions; folders, hidden files and others skipped), each read into
    memory and counted while it inflates: at most ``max_images`` members,
    ``max_bytes`` each and in all. Raises :class:`UploadError`."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError):
        raise UploadError(f"{name}: not a readable zip archive (damaged or truncated?).") from None
    found, total = [], 0
    with archive:
        for info in archive.infolist():
            base = info.filename.rsplit("/", 1)[-1]
            if info.is_dir() or not is_image_name(base) or "__MACOSX/" in info.filename:
                continue
            if len(found) == max_images:
                raise UploadError(
                    f"{name}: more than {max_images} images; send at most {max_images} at a "
                    "time (the server's --max-images).",
                    status=413,
                )
            if info.flag_bits & 0x1:
                raise UploadError(f"{name}: {info.filename} is encrypted.")
            left = min(max_bytes, max_bytes - total)
            try:
                with archive.open(info) as member:
                    content = member.read(left + 1)  # never more than the limit, whatever it says
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError) as exc:
                raise UploadError(
                    f"{name}: the member {info.filename[:200]} cannot be read ({type(exc).__name__})."
                ) from None
            if len(content) > left:
                raise UploadError(
                    f"{name}: its images inflate to more than {_size(max_bytes)} (the server's "
                    "--max-upload-mb).",
                    status=413,
                )
            total += len(content)
            found.append(Upload(f"{name}/{info.filename[:300]}", content))
    if not found:
        raise UploadError(f"{name}: the zip archive holds no image files (.jpg, .png, ...).")
    return found


def decode(upload: Upload, estimator) -> np.ndarray:
    """``upload`` as the network takes it, float32 ``(h, w, c)``: decoded as
    :func:`imgclf._decode.pillow_pixels` decodes a file, alpha flattened,
    channels converted and resized as the pipeline does (:func:`finish`), and
    its 0-255 pixels mapped onto ``input_range_`` (as ``export`` does)."""
    from PIL import Image, UnidentifiedImageError

    too_many = UploadError(
        f"{upload.name}: more pixels than the {max_pixels()} an image may have.", status=413
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's about metadata; the pixels decide
            with Image.open(io.BytesIO(upload.data)) as im:
                if im.width * im.height > max_pixels():
                    raise too_many
            image = pixels_from_memory(upload.data)
    except UploadError:
        raise
    except Image.DecompressionBombError:  # Pillow's own check, at twice the limit
        raise too_many from None
    except UnidentifiedImageError:
        raise UploadError(
            f"{upload.name}: not an image imgclf can read (JPEG, PNG, BMP, GIF, TIFF or WebP)."
        ) from None
    except Exception as exc:  # noqa: BLE001 -- any decoder failure is the file's
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise UploadError(f"{upload.name}: a damaged image ({reason}).") from None
    size, channels = tuple(estimator.image_size_), estimator.n_channels_
    if image.shape == (*size, channels):  # nothing for finish to do (no alpha, no resize)
        x = image
    else:
        tf = get_tf()
        x = finish(tf, tf.constant(image), channels, size).numpy()
    low, high = (float(v) for v in estimator.input_range_)
    return x if (low, high) == (0.0, 255.0) else low + x * ((high - low) / 255.0)


def _jet(values: np.ndarray) -> np.ndarray:
    """A blue-cyan-yellow-red colour map of 0-1 values, as 0-1 RGB."""
    v = np.clip(values, 0, 1)[..., None]
    return np.clip(np.concatenate([4 * v - 1.5, 2 - np.abs(4 * v - 2), 2.5 - 4 * v], -1), 0, 1)


def overlay_png(image: np.ndarray, heat: np.ndarray, input_range, alpha: float = 0.45) -> str:
    """``image`` (network input) with its Grad-CAM ``heat`` map over it, as a
    PNG data URL at least :data:`OVERLAY_SIDE` pixels on its longer side."""
    from PIL import Image

    low, high = (float(v) for v in input_range)
    shown = np.clip((image - low) / ((high - low) or 1.0), 0, 1)
    if shown.shape[-1] == 1:
        shown = np.repeat(shown, 3, axis=-1)
    mixed = (1 - alpha) * shown + alpha * _jet(heat)
    picture = Image.fromarray(np.round(mixed * 255).astype(np.uint8))
    scale = max(1, int(np.ceil(OVERLAY_SIDE / max(picture.size))))
    if scale > 1:
        picture = picture.resize(
            (picture.width * scale, picture.height * scale), Image.Resampling.NEAREST
        )
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


__all__ = [
    "MAX_IMAGES",
    "MAX_REQUEST_BYTES",
    "MAX_UPLOAD_BYTES",
    "Upload",
    "UploadError",
    "decode",
    "is_zip",
    "overlay_png",
    "zip_images",
]
