"""A light training loop for a stage whose inputs are small in-memory vectors.

``TransferClassifier``'s frozen stage trains only its head (dropout and a
softmax layer) on the backbone's pooled features: a few hundred to a few
thousand vectors. There ``model.fit`` costs far more than the arithmetic:
each epoch it builds dataset iterators for the training and validation
arrays and runs a Python step per batch (measured: 20 epochs on 670 vectors
of 576 floats, 6 CPU s, against 0.9 CPU s for the same work here). In a
search of 12 fits on cached features that cost is most of the search.

:func:`fit_vectors` does what ``model.fit`` does for such data with the
compiled model's own loss and optimizer: shuffle each epoch, train in
batches, evaluate the hold-out, call the callbacks and record a
``keras.callbacks.History``. An epoch is one traced call, or, when a
callback has per-batch hooks (a per-batch learning-rate schedule, a progress
bar), one traced call per batch with the hooks around it: the two give the
same weights. :func:`takes_vectors` says when ``_run_stage`` may use it.

Differences from ``model.fit``, none of which imgclf's callbacks use: the
test-time hooks (``on_test_*``) are not called, batch-end ``logs`` hold the
running loss and accuracy only, and the shuffling comes from NumPy's random
state (seeded by ``random_state`` through ``keras.utils.set_random_seed``)
rather than TensorFlow's.
"""

from __future__ import annotations

import logging

import numpy as np

from ._backend import get_keras, get_tf

_BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")


class _OwnTracing(logging.Filter):
    """Drops TensorFlow's "frequent retracing" warning about this loop's own
    functions: they are made and traced once per stage on purpose (a fit's
    model is new), which a search of short fits does often."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "fit_vectors.<locals>" not in record.getMessage()


_FILTER = _OwnTracing()


def takes_vectors(model, data) -> bool:
    """Whether ``data`` (a :class:`~imgclf._trainingdata.TrainingData`) is
    what :func:`fit_vectors` trains on: feature vectors in memory, for a
    model under no distribution strategy."""
    return data.is_vectors and model.distribute_strategy is get_tf().distribute.get_strategy()


def _has_batch_hooks(callbacks: list) -> bool:
    base = get_keras().callbacks.Callback
    return any(
        getattr(type(callback), hook) is not getattr(base, hook)
        for callback in callbacks
        for hook in _BATCH_HOOKS
    )


def fit_vectors(
    model,
    *,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    epochs: int,
    initial_epoch: int = 0,
    callbacks=(),
    validation_data=None,
    sample_weight: np.ndarray | None = None,
    class_weight: dict | None = None,
    shuffle: bool = True,
    verbose=0,
):
    """Train compiled ``model`` on in-memory vectors like ``model.fit`` with
    the same keyword arguments; returns its ``History``. ``sample_weight`` and
    ``class_weight`` multiply; ``validation_data`` may carry the hold-out's
    weights as a third item."""
    keras, tf = get_keras(), get_tf()
    logger = tf.get_logger()
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    n = len(x)
    steps = -(-n // batch_size)
    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList(
        [*callbacks, history],
        add_progbar=verbose != 0,
        verbose=verbose,
        epochs=epochs,
        steps=steps,
        model=model,
    )
    per_batch = _has_batch_hooks(callback_list.callbacks)
    trainable = model.trainable_variables
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(trainable)

    features = tf.convert_to_tensor(x)
    labels = tf.convert_to_tensor(y)
    per_sample = np.ones(n, "float32")
    if sample_weight is not None:
        per_sample = per_sample * np.asarray(sample_weight, "float32")
    if class_weight:
        size = max(max(class_weight), int(y.max())) + 1
        table = np.array([class_weight.get(i, 1.0) for i in range(size)], "float32")
        per_sample = per_sample * table[y]
    weights = tf.convert_to_tensor(per_sample)

    def batch(index):
        """The features, labels and weights of the samples at ``index``."""
        return tf.gather(features, index), tf.gather(labels, index), tf.gather(weights, index)

    def step(xb, yb, wb):
        with tf.GradientTape() as tape:
            predicted = model(xb, training=True)
            loss = model.compute_loss(x=xb, y=yb, y_pred=predicted, sample_weight=wb)
            scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
        optimizer.apply(tape.gradient(scaled, trainable), trainable)
        size = tf.cast(tf.shape(yb)[0], "float32")
        return loss * size, _correct(predicted, yb)

    train_batch = tf.function(step, reduce_retracing=True)

    @tf.function(reduce_retracing=True)
    def train_epoch(order):
        total, correct = tf.constant(0.0), tf.constant(0.0)
        for start in tf.range(0, n, batch_size):
            loss, hits = step(*batch(order[start : start + batch_size]))
            total += loss
            correct += hits
        return total, correct

    @tf.function(reduce_retracing=True)
    def evaluate(xv, yv, wv=None):
        predicted = model(xv, training=False)
        loss = model.compute_loss(x=xv, y=yv, y_pred=predicted, sample_weight=wv, training=False)
        return loss, _correct(predicted, yv) / tf.cast(tf.shape(yv)[0], "float32")

    validation = None
    if validation_data is not None:
        validation = tuple(tf.convert_to_tensor(a) for a in validation_data if a is not None)

    model.stop_training = False
    callback_list.on_train_begin()
    logs = {}
    for epoch in range(initial_epoch, epochs):
        callback_list.on_epoch_begin(epoch)
        order = np.random.permutation(n) if shuffle else np.arange(n)
        if per_batch:
            total = correct = 0.0
            for number, start in enumerate(range(0, n, batch_size)):
                callback_list.on_train_batch_begin(number)
                loss, hits = train_batch(*batch(order[start : start + batch_size]))
                total, correct = total + float(loss), correct + float(hits)
                seen = min(n, start + batch_size)
                callback_list.on_train_batch_end(
                    number, {"loss": total / seen, "accuracy": correct / seen}
                )
        else:
            total, correct = (float(v) for v in train_epoch(tf.constant(order, "int32")))
        logs = {"loss": total / n, "accuracy": correct / n}
        if validation is not None:
            val_loss, val_accuracy = evaluate(*validation)
            logs.update(val_loss=float(val_loss), val_accuracy=float(val_accuracy))
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    return history


def _correct(predicted, labels):
    """How many of ``predicted``'s rows have their largest value at ``labels``;
    for 0/1 label rows (multi-label), the share of labels right at 0.5, summed."""
    tf = get_tf()
    if len(labels.shape) == 2:
        right = tf.equal(tf.cast(predicted >= 0.5, "float32"), tf.cast(labels, "float32"))
        return tf.reduce_sum(tf.reduce_mean(tf.cast(right, "float32"), axis=-1))
    guessed = tf.argmax(predicted, axis=-1, output_type="int32")
    return tf.reduce_sum(tf.cast(tf.equal(guessed, tf.cast(labels, "int32")), "float32"))
