"""CPU seconds per 1,000 training images of CNNClassifier-like networks on 28x28x1.

    TF_ENABLE_ONEDNN_OPTS=0|1 python benchmarks/bench_step_cost.py KIND,FILTERS,BATCH,POLICY[,jit] ...

KIND: "base" (CNNClassifier's default network: a conv-BN-ReLU block per stage
with max pooling, a top block, global pooling, dropout, softmax), "double2"
(two blocks in stages 2 and 3), "res" (residual blocks in stages 2 and 3).
POLICY: a Keras dtype policy ("float32", "mixed_bfloat16"). A trailing
",jit" compiles the training step with XLA (``jit_compile=True``; Keras's
default on CPU with TensorFlow is False). Plain Keras, so
TensorFlow's own oneDNN default applies unless TF_ENABLE_ONEDNN_OPTS is set.
Each spec: one epoch of 12 batches of random images after a traced warm-up;
prints process CPU time (user + system) and wall time per 1,000 images.
"""

import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402

L = keras.layers


def cpu():
    t = os.times()
    return t.user + t.system


def cbr(x, f, name, k=3):
    x = L.Conv2D(f, k, padding="same", use_bias=False, name=name + "_c")(x)
    x = L.BatchNormalization(momentum=0.9, name=name + "_bn")(x)
    return L.ReLU(name=name + "_r")(x)


def net(kind, filters=32, n=10):
    inp = keras.Input((28, 28, 1))
    x = L.Rescaling(1 / 255)(inp)
    if kind == "base":
        for s in range(3):
            x = cbr(x, filters * 2**s, f"s{s}")
            x = L.MaxPooling2D()(x)
        x = cbr(x, filters * 8, "top")
    elif kind == "double":
        for s in range(3):
            x = cbr(x, filters * 2**s, f"s{s}a")
            x = cbr(x, filters * 2**s, f"s{s}b")
            x = L.MaxPooling2D()(x)
        x = cbr(x, filters * 8, "top")
    elif kind == "double2":  # two convs in stages 2-3 only
        x = cbr(x, filters, "s0")
        x = L.MaxPooling2D()(x)
        for s in (1, 2):
            x = cbr(x, filters * 2**s, f"s{s}a")
            x = cbr(x, filters * 2**s, f"s{s}b")
            x = L.MaxPooling2D()(x)
        x = cbr(x, filters * 8, "top")
    elif kind == "res":  # stem, then per stage: pool + residual block (2 convs)
        x = cbr(x, filters, "stem")
        x = L.MaxPooling2D()(x)
        for s in (1, 2):
            x = cbr(x, filters * 2**s, f"s{s}in")
            y = cbr(x, filters * 2**s, f"s{s}a")
            y = L.Conv2D(filters * 2**s, 3, padding="same", use_bias=False)(y)
            y = L.BatchNormalization(momentum=0.9)(y)
            x = L.ReLU()(L.Add()([x, y]))
            x = L.MaxPooling2D()(x)
        x = cbr(x, filters * 8, "top")
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dropout(0.3)(x)
    return keras.Model(inp, L.Dense(n, activation="softmax", dtype="float32")(x))


def measure(kind, filters, batch, policy, jit=False, steps=12):
    keras.config.set_dtype_policy(policy)
    m = net(kind, filters)
    keras.config.set_dtype_policy("float32")
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=jit)
    X = np.random.RandomState(0).randint(0, 255, (batch * steps, 28, 28, 1)).astype(np.float32)
    y = np.random.RandomState(0).randint(0, 10, batch * steps)
    m.fit(X[: batch * 2], y[: batch * 2], batch_size=batch, epochs=1, verbose=0)  # trace
    w, c = time.perf_counter(), cpu()
    m.fit(X, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    w, c = time.perf_counter() - w, cpu() - c
    n = batch * steps
    print(
        json.dumps(
            dict(
                kind=kind,
                filters=filters,
                batch=batch,
                policy=policy,
                jit=jit,
                params=m.count_params(),
                cpu_per_1k=round(c / n * 1000, 2),
                wall_per_1k=round(w / n * 1000, 2),
            )
        ),
        flush=True,
    )


def main():
    for spec in sys.argv[1:]:
        kind, filters, batch, policy, *rest = spec.split(",")
        measure(kind, int(filters), int(batch), policy, jit=rest == ["jit"])


if __name__ == "__main__":
    main()
