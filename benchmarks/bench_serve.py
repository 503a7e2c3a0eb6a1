"""Time ``imgclf serve``'s ``POST /predict`` against ``predict_proba`` on one 224-px image.

    python benchmarks/bench_serve.py [--backbone mobilenet_v2] [--calls 50]

A TransferClassifier (``weights=None``: the weights do not matter here, the
network's size does; one frozen epoch on 24 random images) at 224 x 224 is
saved and served by ``imgclf serve MODEL --port 0`` in a subprocess, as a user
would run it. The same file is loaded here with ``imgclf.load``. Then, after
three warm-up calls of each, ``--calls`` rounds, each one of:

- the API: ``POST /predict`` with the JPEG as the form field ``files``
  (httpx, one kept-alive connection), the answer parsed;
- ``predict_proba([path])``: the file, as ``imgclf predict`` reads it;
- ``predict_proba(x)``: the image already decoded (the network alone).

Prints the median wall time of each and the mean CPU time (user + system:
this process's from ``time.process_time()`` plus, for the API, the server
process's from psutil, which counts in 10 ms ticks: hence means, not
medians), and the API's ratios to the two direct calls. Target (issue
22): the API within 1.5x ``predict_proba``'s time for the file.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
from PIL import Image

import imgclf
from imgclf import TransferClassifier


def cpu_seconds() -> float:
    return time.process_time()  # user + system, all threads, at nanosecond resolution


def start_server(model: Path):
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    process = subprocess.Popen(
        [sys.executable, "-m", "imgclf", "serve", str(model), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    line = process.stdout.readline()
    found = re.search(r"http://[\d.]+:\d+/", line)
    if not found:
        process.kill()
        raise SystemExit(f"imgclf serve did not start: {line!r}")
    return process, found.group(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (24, 224, 224, 3), dtype=np.uint8)
    y = np.repeat(["a", "b"], 12)
    clf = TransferClassifier(
        backbone=args.backbone,
        weights=None,
        image_size=224,
        epochs=1,
        fine_tune_epochs=0,
        random_state=0,
    ).fit(X, y)
    folder = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    model = folder / "model.imgclf"
    clf.save(model)
    picture = folder / "photo.jpg"
    smooth = np.asarray(
        Image.fromarray(X[0]).resize((16, 16)).resize((224, 224), Image.Resampling.BICUBIC)
    )
    Image.fromarray(smooth).save(picture, quality=90)
    data = picture.read_bytes()

    local = imgclf.load(model)
    x = local.network_input([str(picture)])
    process, url = start_server(model)
    server = psutil.Process(process.pid)
    times = {"api": [], "path": [], "array": []}
    cpu = {"api": [], "path": [], "array": []}

    def api(client):
        answer = client.post(url + "predict", files={"files": ("photo.jpg", data, "image/jpeg")})
        answer.raise_for_status()
        return answer.json()["results"][0]["probabilities"]

    calls = {
        "api": None,
        "path": lambda: local.predict_proba([str(picture)]),
        "array": lambda: local.predict_proba(x),
    }
    try:
        with httpx.Client(timeout=120) as client:
            calls["api"] = lambda: api(client)
            for _ in range(3):
                for call in calls.values():
                    call()
            got = api(client)
            want = local.predict_proba([str(picture)])[0]
            assert np.allclose([got[c] for c in local.classes_], want, atol=1e-4), (got, want)
            for _ in range(args.calls):
                for name, call in calls.items():
                    server_cpu = sum(server.cpu_times()[:2]) if name == "api" else 0.0
                    c0, t0 = cpu_seconds(), time.perf_counter()
                    call()
                    times[name].append(time.perf_counter() - t0)
                    spent = cpu_seconds() - c0
                    if name == "api":
                        spent += sum(server.cpu_times()[:2]) - server_cpu
                    cpu[name].append(spent)
    finally:
        process.terminate()
        process.wait(timeout=30)

    load = os.getloadavg()[0]
    print(
        f"{args.backbone} at 224x224, {args.calls} interleaved rounds, load average {load:.1f} "
        f"on {os.cpu_count()} CPUs"
    )
    print(f"{'call':<28}{'wall ms':>10}{'cpu ms':>10}  (median wall, mean cpu)")
    labels = {
        "api": "POST /predict",
        "path": "predict_proba([path])",
        "array": "predict_proba(decoded)",
    }
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    med_cpu = {k: statistics.mean(v) * 1000 for k, v in cpu.items()}
    for name in times:
        print(f"{labels[name]:<28}{med[name]:>10.1f}{med_cpu[name]:>10.1f}")
    print(
        f"API / predict_proba([path]): wall {med['api'] / med['path']:.2f}, "
        f"cpu {med_cpu['api'] / med_cpu['path']:.2f}"
    )
    print(
        f"API / predict_proba(decoded): wall {med['api'] / med['array']:.2f}, "
        f"cpu {med_cpu['api'] / med_cpu['array']:.2f}"
    )


if __name__ == "__main__":
    main()
