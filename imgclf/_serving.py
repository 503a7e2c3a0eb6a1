"""``imgclf serve MODEL``: a page to try a saved model, and a JSON API.

A Starlette application (:func:`create_app`) served by uvicorn
(:func:`serve`); both come with ``pip install "imgclf[serve]"``.

``GET /``
    The page: pick or drop images or a zip of images, see each one's top
    classes with their probabilities, its Grad-CAM overlay, a table of every
    result with a CSV download, and the model card.
``GET /info``
    The model card (``clf.card_``) as JSON.
``POST /predict``
    One or more images (or zip archives of images) as the multipart form
    field ``files``; answers ``{"results": [...]}``, one entry per image in
    the order sent: ``name``, ``label`` (the predicted class), and
    ``probabilities`` (class -> probability), or ``name`` and ``error``.
    ``?gradcam=N`` adds a Grad-CAM overlay (a PNG data URL) to the first N.
    The status is 200 when every image was used; 422 when one or more could
    not be (their entries say why; the others are answered), 413 over a size
    limit, 400 for a request that is not a multipart form with ``files``.

Uploads are read into memory within the limits given to :func:`create_app`
(per file, per request, images per request) while they arrive, decoded from
memory, and zip members are read within the same limits: nothing a client
sends is written to disk and no name it gives is used as a path.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
import threading

import numpy as np

from ._uploads import (
    MAX_IMAGES,
    MAX_REQUEST_BYTES,
    MAX_UPLOAD_BYTES,
    Upload,
    UploadError,
    decode,
    is_zip,
    overlay_png,
    zip_images,
)
from .exceptions import InputError

#: Grad-CAM overlays the page asks for per request (each costs a backward pass).
PAGE_GRADCAM = 8
#: Form fields other than ``files`` a request may carry (ignored).
MAX_OTHER_FIELDS = 16


def _label(value):
    return value.item() if isinstance(value, np.generic) else value


class _Parts:
    """python-multipart callbacks collecting the ``files`` parts in memory,
    each checked against the per-file limit as its bytes arrive."""

    def __init__(self, max_upload: int, max_images: int):
        self.max_upload, self.max_images = max_upload, max_images
        self.files: list[Upload] = []
        self.others = 0
        self._header, self._headers, self._data, self._name = b"", {}, None, None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda d, s, e: self._add_header_field(d[s:e]),
            "on_header_value": lambda d, s, e: self._add_header_value(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _begin(self):
        self._field, self._value, self._headers, self._data = b"", b"", {}, None

    def _add_header_field(self, data: bytes):
        self._field += data

    def _add_header_value(self, data: bytes):
        self._value += data

    def _header_end(self):
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_finished(self):
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name") == b"files" and b"filename" in options:
            if len(self.files) == self.max_images:
                raise UploadError(
                    f"more than {self.max_images} files in one request (the server's "
                    "--max-images); send them in several.",
                    status=413,
                )
            self._name = options[b"filename"].decode("utf-8", "replace")[:300] or "unnamed"
            self._data = bytearray()
        else:
            self.others += 1
            if self.others > MAX_OTHER_FIELDS:
                raise UploadError(
                    "too many form fields; send the images in the field 'files'.", 400
                )

    def _part_data(self, data: bytes, start: int, end: int):
        if self._data is None:
            return
        if len(self._data) + end - start > self.max_upload:
            raise UploadError(
                f"{self._name}: larger than {self.max_upload / 2**20:.1f} MiB (the server's "
                "--max-upload-mb).",
                status=413,
            )
        self._data += data[start:end]

    def _part_end(self):
        if self._data is not None:
            self.files.append(Upload(self._name, bytes(self._data)))
        self._data = None


async def read_uploads(request, *, max_upload: int, max_request: int, max_images: int):
    """The ``files`` of a multipart request, in memory, within the limits;
    raises :class:`UploadError` (4xx) otherwise."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadError(
            "send the images as a multipart form (multipart/form-data), in the field 'files'.",
            400,
        )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_request:
        raise UploadError(
            f"the request has {int(length) / 2**20:.1f} MiB, more than the "
            f"{max_request / 2**20:.1f} MiB allowed (the server's --max-request-mb).",
            413,
        )
    parts = _Parts(max_upload, max_images)
    parser = MultipartParser(options[b"boundary"], parts.callbacks())
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_request:
                raise UploadError(
                    f"the request is larger than {max_request / 2**20:.1f} MiB (the server's "
                    "--max-request-mb).",
                    413,
                )
            parser.write(chunk)
        parser.finalize()
    except UploadError:
        raise
    except Exception as exc:  # noqa: BLE001 -- python-multipart's errors: a malformed form
        raise UploadError(
            f"the multipart form cannot be read ({type(exc).__name__}).", 400
        ) from None
    if not parts.files:
        raise UploadError("no files: send one or more images in the form field 'files'.", 400)
    return parts.files


class Predictor:
    """The loaded estimator, answering lists of uploads (one at a time: the
    network's calls are serialised by a lock)."""

    def __init__(self, estimator, *, max_upload: int, max_images: int):
        self.estimator = estimator
        self.max_upload, self.max_images = max_upload, max_images
        self.classes = [_label(c) for c in estimator.classes_]
        self.lock = threading.Lock()

    def expand(self, uploads: list[Upload]) -> list[Upload | dict]:
        """Zip archives replaced by their images; an unreadable archive by its error."""
        out: list[Upload | dict] = []
        for upload in uploads:
            if not is_zip(upload.data):
                out.append(upload)
                continue
            try:
                out.extend(
                    zip_images(
                        upload.name,
                        upload.data,
                        max_bytes=self.max_upload,
                        max_images=self.max_images,
                    )
                )
            except UploadError as exc:
                out.append({"name": upload.name, "error": str(exc), "status": exc.status})
        if sum(isinstance(u, Upload) for u in out) > self.max_images:
            raise UploadError(
                f"more than {self.max_images} images in one request (the server's --max-images).",
                413,
            )
        return out

    def answer(self, uploads: list[Upload], gradcam: int = 0) -> tuple[list[dict], int]:
        """``(results, status)`` for ``uploads``, in order."""
        results, inputs, where = [], [], []
        for item in self.expand(uploads):
            if isinstance(item, dict):
                results.append(item)
                continue
            try:
                inputs.append(decode(item, self.estimator))
            except UploadError as exc:
                results.append({"name": item.name, "error": str(exc), "status": exc.status})
                continue
            where.append(len(results))
            results.append({"name": item.name})
        if inputs:
            batch = np.stack(inputs)
            with self.lock:
                proba = self.estimator.predict_proba(batch)
                overlays = self._overlays(batch[:gradcam]) if gradcam > 0 else []
            for k, (i, p) in enumerate(zip(where, proba, strict=True)):
                results[i]["label"] = self.classes[int(np.argmax(p))]
                results[i]["probabilities"] = {
                    str(c): round(float(v), 6) for c, v in zip(self.classes, p, strict=True)
                }
                if k < len(overlays):
                    results[i]["gradcam"] = overlays[k]
        statuses = [r.pop("status") for r in results if "status" in r]
        return results, (max(statuses) if statuses else 200)

    def _overlays(self, batch) -> list:
        from .explain import grad_cam

        try:
            heat, _ = grad_cam(self.estimator, batch)
        except InputError:  # a network Grad-CAM cannot follow: no overlays
            return []
        return [
            overlay_png(x, h, self.estimator.input_range_) for x, h in zip(batch, heat, strict=True)
        ]


def create_app(
    estimator,
    *,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    max_images: int = MAX_IMAGES,
):
    """The Starlette application serving ``estimator`` (fitted): the page,
    ``GET /info`` and ``POST /predict`` (see :mod:`imgclf._serving`).

    Parameters
    ----------
    estimator : fitted imgclf classifier
        What ``imgclf.load`` returned.
    max_upload_bytes : int
        The largest file (an image or a zip archive, and a zip's images
        together once inflated).
    max_request_bytes : int
        The largest request, all its files together.
    max_images : int
        The most images in one request (each image of a zip counts).
    """
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    from ._servepage import page

    predictor = Predictor(estimator, max_upload=max_upload_bytes, max_images=max_images)
    card = json.loads(json.dumps(estimator.card_))
    html = page(
        card,
        limits={
            "max_upload": max_upload_bytes,
            "max_request": max_request_bytes,
            "max_images": max_images,
            "gradcam": PAGE_GRADCAM,
        },
    )

    async def index(request):
        return HTMLResponse(html)

    async def info(request):
        return JSONResponse(card)

    async def predict(request):
        try:
            gradcam = int(request.query_params.get("gradcam", "0"))
        except ValueError:
            return JSONResponse({"error": "gradcam: expected a whole number"}, 400)
        gradcam = min(max(gradcam, 0), PAGE_GRADCAM)
        try:
            uploads = await read_uploads(
                request,
                max_upload=max_upload_bytes,
                max_request=max_request_bytes,
                max_images=max_images,
            )
            results, status = await run_in_threadpool(predictor.answer, uploads, gradcam)
        except UploadError as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        return JSONResponse({"results": results}, status)

    routes = [
        Route("/", index),
        Route("/info", info),
        Route("/predict", predict, methods=["POST"]),
    ]
    return Starlette(routes=routes)


def _needs_extra():
    missing = []
    for module in ("starlette", "uvicorn", "python_multipart"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module.replace("_", "-"))
    if missing:
        raise InputError(f'imgclf serve needs {", ".join(missing)}: pip install "imgclf[serve]".')


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise InputError(
            f"imgclf serve cannot listen on {host}:{port} ({exc.strerror or exc}). Choose "
            "another --port (0 picks a free one) or --host."
        ) from None


def serve(model_path: str, *, host="127.0.0.1", port=8000, trusted=False, **limits) -> int:
    """Load the model at ``model_path`` with :func:`imgclf.load` and serve it
    until interrupted; a model that fails to load raises before anything
    listens. ``limits``: :func:`create_app`'s."""
    _needs_extra()
    import uvicorn

    from ._persist import load

    estimator = load(model_path, trusted=trusted)
    shape = (1, *estimator.image_size_, estimator.n_channels_)
    estimator.predict_proba(np.full(shape, estimator.input_range_[0], np.float32))  # warm up
    app = create_app(estimator, **limits)
    sock = _bind(host, port)
    where = sock.getsockname()
    url_host = f"[{where[0]}]" if ":" in where[0] else where[0]
    if not _is_loopback(host):
        print(
            f"imgclf serve: warning: listening on {host}, reachable from other machines; "
            "the page has no login.",
            file=sys.stderr,
        )
    print(f"imgclf serve: http://{url_host}:{where[1]}/ (Ctrl+C to stop)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])
    return 0


__all__ = ["PAGE_GRADCAM", "Predictor", "create_app", "read_uploads", "serve"]
