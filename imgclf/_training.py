"""How training runs, apart from any one estimator: the callbacks of a stage
(the learning-rate schedule, early stopping) and their constants, the batch
size, the pixel range, and the amortised garbage collection between fits."""

from __future__ import annotations

import gc
import math
import time

import numpy as np

from ._backend import get_keras, get_tf

#: Early stopping ignores improvements of the monitored loss smaller than
#: this: once the learning rate is low the loss creeps down by 1e-4 an epoch
#: for many epochs, and that is not progress.
EARLY_STOPPING_MIN_DELTA = 1e-3
#: ``lr_schedule="plateau"`` multiplies the learning rate by this factor after
#: ``max(1, patience // 2)`` epochs without improvement...
PLATEAU_FACTOR = 0.2
#: ...down to ``learning_rate * PLATEAU_MIN_RATIO``.
PLATEAU_MIN_RATIO = 0.01
#: ``"one_cycle"`` (fastai's ``fit_one_cycle``): warm up over this share of the
#: planned steps...
ONE_CYCLE_WARMUP = 0.25
#: ...from ``learning_rate / ONE_CYCLE_DIV``...
ONE_CYCLE_DIV = 25.0
#: ...then anneal to ``learning_rate / ONE_CYCLE_FINAL_DIV``.
ONE_CYCLE_FINAL_DIV = 1e4
#: The values ``lr_schedule`` takes (with None, a constant rate).
LR_SCHEDULES = ("plateau", "one_cycle", "cosine")
#: Under a per-batch schedule, early stopping watches only the epochs that end
#: with the learning rate at most this share of its peak: near the peak the
#: hold-out loss is noisy and often rises for several epochs before the rate
#: comes down (Fashion-MNIST 5k, one-cycle over 23 epochs: stopped at epoch
#: 12, at 0.72 of the peak, with 0.848 test accuracy against 0.882 for the
#: whole cycle).
EARLY_STOPPING_WATCH_RATE = 0.5


def _cosine(start: float, end: float, pct: float) -> float:
    """From ``start`` at ``pct=0`` to ``end`` at ``pct=1`` along half a cosine."""
    return end + (start - end) * (1 + math.cos(math.pi * pct)) / 2


def scheduled_lr(schedule: str | None, learning_rate: float, step: int, total: int) -> float:
    """The learning rate of batch ``step`` (from 0) of a stage planned for
    ``total`` batches, under a per-batch schedule (``"one_cycle"``,
    ``"cosine"``; anything else is constant). The first batch and the last
    planned one get the schedule's end points; batches past the plan the last."""
    pct = min(1.0, step / max(1, total - 1))
    if schedule == "one_cycle":
        low = learning_rate / ONE_CYCLE_DIV
        if pct < ONE_CYCLE_WARMUP:
            return _cosine(low, learning_rate, pct / ONE_CYCLE_WARMUP)
        final = learning_rate / ONE_CYCLE_FINAL_DIV
        return _cosine(learning_rate, final, (pct - ONE_CYCLE_WARMUP) / (1 - ONE_CYCLE_WARMUP))
    if schedule == "cosine":
        return _cosine(learning_rate, 0.0, pct)
    return learning_rate


def early_stopping_start(schedule: str | None, epochs: int) -> int:
    """The first epoch (0-based) that early stopping watches in a stage of
    ``epochs`` under ``schedule``: for the per-batch ones (``"one_cycle"``,
    ``"cosine"``) the first after the peak that ends with the rate at most
    :data:`EARLY_STOPPING_WATCH_RATE` of the peak (one-cycle: epoch 14 of
    23, 2 of 4); otherwise 0. Keras's ``EarlyStopping(start_from_epoch=...)``
    ignores the epochs before it, and so does the fit's record of the weights
    it would keep (:class:`imgclf._fitrun.FitRun`)."""
    if schedule not in ("one_cycle", "cosine"):
        return 0
    per_epoch = 1000  # batches per epoch do not matter at this resolution
    ends = [
        scheduled_lr(schedule, 1.0, (epoch + 1) * per_epoch - 1, epochs * per_epoch)
        for epoch in range(epochs)
    ]
    peak = int(np.argmax(ends))  # past the warm-up, whose rates are low too
    return next(
        (e for e in range(peak, epochs) if ends[e] <= EARLY_STOPPING_WATCH_RATE), epochs - 1
    )


def improves(value: float, best: float | None, min_delta: float = EARLY_STOPPING_MIN_DELTA) -> bool:
    """Whether a monitored loss of ``value`` improves on ``best`` (None: no
    epoch watched yet): lower by more than ``min_delta``, Keras's
    ``EarlyStopping`` comparison (a NaN never improves on a number)."""
    return best is None or float(value) < float(best) - min_delta


def best_epoch(
    values, *, min_delta: float = EARLY_STOPPING_MIN_DELTA, start: int = 0, keep_best: bool = True
) -> int:
    """The epoch (an index into ``values``) whose weights a training stage
    keeps: the one rule behind early stopping's restore, the fit's record of
    the weights kept so far (:class:`imgclf._fitrun.FitRun`), the transfer
    stage choice, ``best_epoch_``, the plot's marker and the command line.

    ``values`` are the stage's monitored losses, one an epoch; ``start`` the
    first epoch early stopping watches (:func:`early_stopping_start`). The
    kept epoch is the last one that :func:`improves` on the one kept before
    it, counted from ``start`` (so a lower loss before ``start``, or one
    lower by no more than ``min_delta``, is not kept); while no epoch from
    ``start`` has ended, and with ``keep_best=False`` (early stopping off),
    it is the last epoch.
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("best_epoch needs at least one epoch's value.")
    if not keep_best or len(values) <= start:
        return len(values) - 1
    kept, best = start, None
    for epoch in range(start, len(values)):
        if improves(values[epoch], best, min_delta):
            kept, best = epoch, values[epoch]
    return kept


def stage_callbacks(
    monitor: str,
    *,
    learning_rate: float,
    epochs: int,
    patience: int,
    early_stopping: bool,
    lr_schedule: str | None,
) -> list:
    """The callbacks every training stage runs: the learning-rate schedule
    (which also logs the rate of each epoch), then early stopping (when on),
    watching from :func:`early_stopping_start`. Early stopping only stops:
    the weights of :func:`best_epoch` are put back at the end of the stage
    by the fit's record (:meth:`imgclf._fitrun.FitRun.stage_ended`)."""
    keras = get_keras()
    callbacks = []
    if lr_schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor,
                factor=PLATEAU_FACTOR,
                patience=max(1, patience // 2),
                min_lr=learning_rate * PLATEAU_MIN_RATIO,
            )
        )
    else:
        callbacks.append(_schedule_callback(lr_schedule, learning_rate, epochs))
    if early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor,
                patience=patience,
                min_delta=EARLY_STOPPING_MIN_DELTA,
                restore_best_weights=False,
                start_from_epoch=early_stopping_start(lr_schedule, epochs),
            )
        )
    return callbacks


_SCHEDULE: list = []


def _schedule_callback(schedule: str | None, learning_rate: float, epochs: int):
    """The callback of ``schedule``: a per-batch one, or the constant-rate one
    for None; its classes are made on first use so ``import imgclf`` stays
    light."""
    if not _SCHEDULE:
        keras = get_keras()

        class ConstantRate(keras.callbacks.Callback):
            """Sets the optimizer's learning rate when training begins and logs
            it as each epoch's ``learning_rate``.

            The rate stays a plain variable, which checkpoints save and
            restore like the plateau schedule's. No batch hooks: a callback
            that has them makes Keras (and imgclf's loop for feature vectors)
            call back after every batch."""

            def __init__(self, learning_rate: float):
                super().__init__()
                self.learning_rate = float(learning_rate)
                self.rate = self.learning_rate

            def on_train_begin(self, logs=None):
                self._set(self.learning_rate)

            def on_epoch_end(self, epoch, logs=None):
                if logs is not None:
                    logs["learning_rate"] = self.rate

            def _set(self, rate: float) -> None:
                self.rate = float(rate)
                self.model.optimizer.learning_rate = self.rate

        class BatchSchedule(ConstantRate):
            """Sets the learning rate before every batch from the batch's place
            in the stage (``epoch * steps + batch``), so a stage resumed at
            ``initial_epoch`` picks the cycle up where it was, and logs the
            last batch's rate as the epoch's ``learning_rate``.

            A callback rather than a ``LearningRateSchedule`` in the optimizer:
            the step count does not depend on the optimizer's iterations
            (which a resumed fit's new optimizer restarts from 0).
            """

            def __init__(self, schedule: str, learning_rate: float, epochs: int):
                super().__init__(learning_rate)
                self.schedule = schedule
                self.epochs = int(epochs)
                self.steps = None  # batches per epoch
                self.epoch = self.first_epoch = 0

            def on_train_begin(self, logs=None):
                # Keras knows the length of arrays and of imgclf's datasets;
                # otherwise it is counted in the first epoch, which meanwhile
                # takes the batches seen so far for the epoch's length.
                self.steps = (self.params or {}).get("steps")
                self.first_epoch = None
                super().on_train_begin(logs)

            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch
                if self.first_epoch is None:
                    self.first_epoch = epoch

            # No on_train_batch_end: defining one makes Keras wait for every
            # batch to finish before it dispatches the next.
            def on_train_batch_begin(self, batch, logs=None):
                if not (self.params or {}).get("steps") and self.epoch == self.first_epoch:
                    self.steps = batch + 1
                steps = self.steps or batch + 1
                step, total = self.epoch * steps + batch, self.epochs * steps
                self._set(scheduled_lr(self.schedule, self.learning_rate, step, total))

        _SCHEDULE.extend([ConstantRate, BatchSchedule])
    constant, per_batch = _SCHEDULE
    return (
        constant(learning_rate) if schedule is None else per_batch(schedule, learning_rate, epochs)
    )


# Seconds spent fitting since the last collection, and what that collection took.
GARBAGE = {"fit_seconds": 0.0, "collect_seconds": 0.0}
#: A collection (0.4-0.6 CPU s here with TensorFlow loaded) runs once fitting
#: since the last one has taken 1 / GARBAGE_SHARE times as long: at 0.02 it
#: ran before every other fit of 8,000 Fashion-MNIST images x 2 epochs on a
#: loaded machine, 2 % of their CPU time, the whole of imgclf's allowance
#: over plain Keras.
GARBAGE_SHARE = 0.01


def collect_garbage() -> None:
    """Collect the reference cycles of networks dropped by earlier fits, amortised.

    A Keras model is a web of cycles that only ``gc.collect`` frees. A full
    collection walks every object TensorFlow created (~0.2 s here), which was
    the whole of imgclf's overhead over plain Keras on small fits. So it runs
    only once fitting since the last one has taken ``1 / GARBAGE_SHARE``
    times as long as that collection did: after every fit of a large network,
    every few fits of a small one (whose networks weigh little meanwhile).
    With a GPU it always runs: device memory is freed only with the Python
    objects, and Python's own collector does not see it filling up.
    """
    state = GARBAGE
    due = state["collect_seconds"] <= GARBAGE_SHARE * state["fit_seconds"]
    if not (due or gpu_visible()):
        return
    start = time.perf_counter()
    gc.collect()
    state["collect_seconds"] = time.perf_counter() - start
    state["fit_seconds"] = 0.0


def count_fitting(seconds: float) -> None:
    """Add a fit's duration to the time the next collection is weighed against."""
    GARBAGE["fit_seconds"] += seconds


def gpu_visible() -> bool:
    return bool(get_tf().config.list_physical_devices("GPU"))


def resolve_batch_size(batch_size, n_train: int) -> int:
    """``"auto"``: a power of two giving about 50 steps per epoch, from 16 to 128.

    Small datasets need many small steps: with a few large ones per epoch,
    BatchNorm's running statistics lag the weights, the validation loss looks
    worse than it is and early stopping fires on a good model.
    """
    if batch_size != "auto":
        return int(batch_size)
    steps_target = 50
    size = 16
    while size < 128 and n_train / (size * 2) >= steps_target:
        size *= 2
    return size


#: ``epochs="auto"``: plan about this many gradient steps (batches)...
AUTO_EPOCHS_STEPS = 1600
#: ...in no fewer than this many epochs...
AUTO_EPOCHS_MIN = 3
#: ...and no more than this many.
AUTO_EPOCHS_MAX = 30


def resolve_epochs(epochs, n_train: int, batch_size: int) -> int:
    """``"auto"``: the epochs that make about :data:`AUTO_EPOCHS_STEPS` steps
    of ``batch_size`` over ``n_train`` images, from :data:`AUTO_EPOCHS_MIN`
    to :data:`AUTO_EPOCHS_MAX`; an integer is returned as it is.

    A schedule that spreads over the planned steps (``"one_cycle"``) needs a
    plan that fits the data: 30 epochs of the 60,000 Fashion-MNIST images
    would take an hour here and stay at a high rate for most of it, while a
    few hundred images need many epochs to make enough steps. With the
    ``"auto"`` batch size (128 from 12,800 images up) a large set gets a
    fixed cost, about 200,000 images seen: 4 epochs of 54,000 (0.92 on
    Fashion-MNIST in ~500 CPU s), 21 of 1,212 digits, 30 of 50 images.
    """
    if epochs != "auto":
        return int(epochs)
    steps_per_epoch = max(1, math.ceil(n_train / batch_size))
    planned = round(AUTO_EPOCHS_STEPS / steps_per_epoch)
    return int(min(AUTO_EPOCHS_MAX, max(AUTO_EPOCHS_MIN, planned)))


def pixel_range(array: np.ndarray) -> tuple[float, float]:
    """Pixel units of the training data, mapped to 0-1 by the network's first layer.

    uint8 (and bool) are 0-255 (0-1); floats already in 0-1 stay as they are;
    anything else (e.g. digits' 0-16) is min-max scaled by the range seen in fit.
    """
    if array.dtype == np.uint8:
        return (0.0, 255.0)
    if array.dtype == np.uint16:
        return (0.0, 65535.0)
    if array.dtype == np.bool_:
        return (0.0, 1.0)
    low, high = float(array.min()), float(array.max())
    if low >= 0 and high <= 1:
        return (0.0, 1.0)
    return (low, high)


#: A hold-out smaller than this many images per class is not made: its loss
#: is too noisy for early stopping, which then keeps the weights of an
#: early epoch (10 Fashion-MNIST images per class with a 10 % hold-out
#: ended at chance for 5 seeds out of 5; ``benchmarks/bench_tiny.py``).
MIN_VALIDATION_PER_CLASS = 5

#: BatchNorm statistics are recomputed at the end of ``fit`` from at most
#: this many training images...
BATCHNORM_IMAGES = 1024
#: ...and at most this many bytes of them as float32 network input...
BATCHNORM_BYTES = 256 * 2**20
#: ...and, beyond :data:`BATCHNORM_MIN_IMAGES`, at most this share of the
#: images the fit's epochs went through: the refresh costs about two
#: inference passes over its sample (1.2-1.5 CPU s of 1,024 Fashion-MNIST
#: images for the default network), which was 6 % of a fit of 8,000 images
#: x 2 epochs; at 256 images it is a quarter of that, and the statistics
#: come from 256 x h x w positions per channel.
BATCHNORM_SHARE = 0.01
#: The sample is never cut below this many images (the training set's size
#: if smaller): short fits are the ones whose statistics lag most.
BATCHNORM_MIN_IMAGES = 256


def holdout_size(fraction: float, counts: np.ndarray) -> int:
    """Images to hold out for early stopping: ``fraction`` of them, or 0 when
    that leaves fewer than :data:`MIN_VALIDATION_PER_CLASS` images per class
    (``counts``: images per class) or nothing to train on."""
    n = int(counts.sum())
    n_val = int(round(fraction * n))
    present = int(np.count_nonzero(counts))
    if n_val < MIN_VALIDATION_PER_CLASS * present or n - n_val < present:
        return 0
    return n_val


def batchnorm_sample_size(
    n_train: int, image_shape: tuple[int, ...], images_seen: int | None = None
) -> int:
    """How many training images :func:`refresh_batchnorm` computes statistics
    on: all of them up to :data:`BATCHNORM_IMAGES` and :data:`BATCHNORM_BYTES`,
    and no more than :data:`BATCHNORM_SHARE` of ``images_seen`` (the images
    the fit's epochs went through, if given) unless that is under
    :data:`BATCHNORM_MIN_IMAGES`."""
    per_image = 4 * int(np.prod(image_shape))
    size = min(n_train, BATCHNORM_IMAGES, max(1, BATCHNORM_BYTES // per_image))
    if images_seen is not None:
        size = min(size, max(BATCHNORM_MIN_IMAGES, int(BATCHNORM_SHARE * images_seen)))
    return int(size)


def refresh_batchnorm(model, sample, judge=None) -> int:
    """Set every trainable top-level BatchNorm layer's moving mean and variance
    to the exact mean and (biased) variance of its input over the batches of
    network input that ``sample()`` returns (called once, only if there are
    such layers).

    During training the moving statistics are an exponential average of
    batch statistics taken while the weights changed; after a few dozen steps
    (a short fit, a tiny dataset) they are still mostly their initial values
    (0 and 1), and the network scores at chance in inference mode while its
    training-mode accuracy is high (120 digits, 3 epochs: 0.333 -> 0.837 with
    exact statistics; ``benchmarks/bench_tiny.py``). The layers are refreshed
    in network order, each from inputs computed with the ones before it
    already refreshed, in inference mode (no augmentation, no dropout), as
    the network will run in prediction: in one pass layer by layer where the
    network allows it (each layer called once, no nested model, the held
    activations within :data:`BATCHNORM_BYTES`), otherwise from the input
    again for each BatchNorm layer (a third of the cost for the default
    ``CNNClassifier``'s four; ``benchmarks/bench_overhead.py``).

    Layers of a nested model (a pretrained backbone, whose statistics must
    stay those of its pretraining) and frozen layers are left as they are.

    ``judge``, if given, returns the model's loss on held-out data: the new
    statistics are kept only if they do not raise it (on full digits the
    moving averages of a long fit were as good or better by a test image or
    two). Returns the number of layers refreshed and kept.
    """
    keras = get_keras()
    norms = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]
    if not norms:
        return 0
    before_loss = judge() if judge is not None else None
    before = [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in norms]
    pixels = np.concatenate([np.asarray(batch, dtype=np.float32) for batch in sample()])
    walk = _layer_walk(model, norms, len(pixels))
    if walk is not None:
        _refresh_in_one_pass(model, walk, set(map(id, norms)), pixels)
    else:
        _refresh_by_prefixes(model, norms, pixels)
    if before_loss is not None and not judge() <= before_loss:
        for layer, (mean, variance) in zip(norms, before, strict=True):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)
        return 0
    return len(norms)


def _set_exact_statistics(layer, batches) -> None:
    """Set BatchNorm ``layer``'s moving mean and variance to the exact mean
    and (biased) variance of its inputs ``batches`` (per-batch moments in
    float32, merged exactly in float64: Chan et al.)."""
    tf = get_tf()
    rank = len(layer.input.shape)
    axes = [i for i in range(rank) if i != layer.axis % rank]
    count, mean, m2 = 0, 0.0, 0.0
    for out in batches:
        out = tf.cast(out, tf.float32)
        n = int(np.prod([out.shape[i] for i in axes]))
        batch_mean, batch_var = (t.numpy().astype(np.float64) for t in tf.nn.moments(out, axes))
        delta = batch_mean - mean
        total = count + n
        mean = mean + delta * n / total
        m2 = m2 + batch_var * n + np.square(delta) * count * n / total
        count = total
    layer.moving_mean.assign(np.asarray(mean, dtype=np.float32))
    layer.moving_variance.assign(np.asarray(m2 / count, dtype=np.float32))


def _chunks(x, size: int = 256) -> list:
    return [x[i : i + size] for i in range(0, len(x), size)]


def _refresh_by_prefixes(model, norms, pixels) -> None:
    """Each layer from the network's prefix up to it, run again from the
    input for each layer: any network Keras can cut at a layer's input."""
    keras = get_keras()
    batches = _chunks(pixels)
    for layer in norms:
        inner = keras.Model(model.input, layer.input)
        _set_exact_statistics(layer, (inner(batch, training=False) for batch in batches))


def _layer_walk(model, norms, n_images: int) -> list | None:
    """``model``'s layers up to the last of ``norms``, in an order that runs
    each after its inputs, for :func:`_refresh_in_one_pass`; None when the
    network cannot be walked that way (a layer called more than once, a
    nested model, more than one input) or when the activations the walk holds
    at once would pass :data:`BATCHNORM_BYTES`."""
    keras = get_keras()
    if len(model.inputs) != 1:
        return None
    last = max(model.layers.index(layer) for layer in norms)
    walk, ready = [], {id(model.inputs[0])}
    for layer in model.layers[: last + 1]:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            return None
        try:
            inputs, outputs = _flat(layer.input), _flat(layer.output)
        except (AttributeError, ValueError):  # called more than once, or never
            return None
        if not all(id(t) in ready for t in inputs):
            return None
        ready.update(id(t) for t in outputs)
        walk.append((layer, inputs, outputs))
    # Each tensor is held from the layer that makes it to its last user.
    live = peak = _tensor_bytes(model.inputs[0], n_images)
    for (_, _, outputs), released in zip(walk, _released(walk), strict=True):
        live += sum(_tensor_bytes(t, n_images) for t in outputs)
        peak = max(peak, live)
        live -= sum(_tensor_bytes(t, n_images) for t in released)
    return walk if peak <= BATCHNORM_BYTES else None


def _released(walk) -> list[list]:
    """For each step of ``walk``, the input tensors whose last user it is
    (after it they need not be held)."""
    remaining: dict[int, int] = {}
    for _, inputs, _ in walk:
        for t in inputs:
            remaining[id(t)] = remaining.get(id(t), 0) + 1
    steps = []
    for _, inputs, _ in walk:
        last = []
        for t in inputs:
            remaining[id(t)] -= 1
            if not remaining[id(t)]:
                last.append(t)
        steps.append(last)
    return steps


def _flat(tensors) -> list:
    return list(tensors) if isinstance(tensors, (list, tuple)) else [tensors]


def _tensor_bytes(tensor, n_images: int) -> int:
    return 4 * n_images * int(np.prod([d or 1 for d in tensor.shape[1:]]))


def _refresh_in_one_pass(model, walk, norm_ids, pixels) -> None:
    """One inference pass over the sample, layer by layer: each BatchNorm's
    statistics are set from its input just before it runs, so the layers after
    it see it refreshed, as :func:`_refresh_by_prefixes` computes them, at
    the cost of one pass rather than one per BatchNorm layer."""
    values = {id(model.inputs[0]): pixels}
    for (layer, inputs, outputs), released in zip(walk, _released(walk), strict=True):
        args = [values[id(t)] for t in inputs]
        if id(layer) in norm_ids:
            _set_exact_statistics(layer, _chunks(args[0]))
        x = args[0] if len(args) == 1 else args
        result = layer(x, training=False)
        for t, value in zip(outputs, _flat(result), strict=True):
            values[id(t)] = value
        for t in released:
            del values[id(t)]
