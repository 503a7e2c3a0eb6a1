"""CNNClassifier: a compact modern CNN trained from scratch."""

from __future__ import annotations

from ._backend import get_keras
from ._base import DROPOUT, BaseImageClassifier
from ._calibration import output_layers
from ._multilabel import output_activation
from ._netparts import CLASSIFIER_LAYER, DROPOUT_LAYER, POOL_LAYER
from ._params import NONE, Integer, Options, param

#: ``lr_schedule``'s default.
DEFAULT_LR_SCHEDULE = "one_cycle"


def _n_stages(side: int) -> int:
    """Downsampling stages for an input side: halve while the map stays >= 3 px,
    at most 5 (8 px -> 2, 28 px -> 3, 64 px -> 4, 224 px -> 5)."""
    stages = 0
    while side >= 6 and stages < 5:
        side //= 2
        stages += 1
    return stages


class CNNClassifier(BaseImageClassifier):
    """A convolutional network trained from scratch, as a scikit-learn classifier.

    The network is sized to the input: stages of conv-BatchNorm-ReLU blocks,
    each followed by 2x2 max pooling, doubling the width per stage; then global
    average pooling, dropout and a softmax layer. Good for small images
    (8-64 px) and as a baseline before :class:`TransferClassifier`.

    Parameters
    ----------
    epochs : int or "auto", default="auto"
        Maximum number of passes over the training data. ``"auto"`` plans
        about 1,600 gradient steps, from 3 to 30 epochs
        (``imgclf._training.resolve_epochs``): 4 epochs of 60,000 images,
        about 20 of 1,500, 30 of a few hundred, for the one-cycle schedule
        to spread over. Pass an integer to train longer. The value used is
        ``epochs_``.
    batch_size : int or "auto", default="auto"
        Images per gradient step. ``"auto"`` picks a power of two from 16 to
        128 that gives about 50 steps per epoch: small datasets need many
        small steps for BatchNorm statistics to keep up.
    learning_rate : float, default=3e-3
        Adam learning rate: the peak of ``"one_cycle"``, the start of the
        other schedules (for ``"plateau"`` or a constant rate, 1e-3 is the
        usual choice). :meth:`lr_find` suggests one.
    lr_schedule : {"one_cycle", "plateau", "cosine"} or None, default="one_cycle"
        How the learning rate moves during training. ``"plateau"``: divided
        by 5 (``imgclf._training.PLATEAU_FACTOR``) when the monitored loss
        (as for early stopping) has not improved for ``max(1, patience // 2)``
        epochs, down to 1/100 of ``learning_rate``. ``"one_cycle"``
        (fastai's ``fit_one_cycle``): warms up from ``learning_rate / 25``
        to ``learning_rate`` over the first 25% of the planned batches
        (``epochs`` times the batches per epoch), then anneals along a
        cosine to ``learning_rate / 1e4``. ``"cosine"``: anneals from
        ``learning_rate`` to 0 along a cosine over the planned batches.
        ``None``: constant. The two cosine schedules change the rate every
        batch and plan for all ``epochs``; early stopping watches only the
        epochs that end with the rate at most half its peak.
        ``history_["learning_rate"]`` holds each epoch's last rate.
    image_size : int or (int, int), optional
        Size the network takes; every input is resized to it. ``None`` keeps
        the size of array inputs and uses 64x64 for file paths.
    color_mode : {"auto", "grayscale", "rgb"}, default="auto"
        Channels the network takes: ``"auto"`` follows the training data
        (arrays: their channel count; files: grayscale only if every sampled
        file is). Otherwise images are converted to the given mode, in
        training and prediction alike.
    augment : None, str, dict or list of keras layers, default=None
        Augmentation applied in training only: ``None``, a preset name
        (``"light"``, ``"standard"``, ``"heavy"``; see
        :data:`imgclf.augment.PRESETS`), a dict such as
        ``{"flip": "horizontal", "zoom": 0.1}``, or Keras preprocessing layers.
    early_stopping : bool, default=True
        Stop when the validation loss (the training loss without a hold-out)
        has not improved for ``patience`` epochs, and restore the best weights.
        Under ``"one_cycle"`` and ``"cosine"`` only the epochs that end with
        the learning rate at most half its peak count (near the peak the
        hold-out loss is noisy); the ones before neither stop nor are kept.
    patience : int, default=5
        Epochs without improvement before early stopping.
    validation_fraction : float, default=0.1
        Stratified hold-out used for early stopping and ``history_["val_*"]``.
        ``0.0`` trains on everything. No hold-out is made when it would hold
        fewer than 5 images per class (too few to judge epochs by): early
        stopping then watches the training loss.
    class_weight : dict, "balanced" or None, default=None
        Weights per class label, or ``"balanced"`` for inverse frequency.
        Not supported with multi-label targets (an error says so).
    random_state : int, RandomState or None, default=None
        Seeds weights, shuffling, augmentation and the hold-out split. The same
        integer gives the same predictions on CPU.
    verbose : int, default=0
        0 silent, 1 a progress bar per epoch, 2 one line per epoch.
    warm_start : bool, default=False
        Continue training the fitted network on the next ``fit`` instead of
        starting again (same classes and input shape required).
    callbacks : list of keras.callbacks.Callback, optional
        Extra Keras callbacks run during training.
    on_bad_file : {"skip", "error"}, default="skip"
        What ``fit`` does with image files that cannot be used (empty,
        truncated, not an image, over ``PIL.Image.MAX_IMAGE_PIXELS``):
        ``"skip"`` trains without them and warns, naming each file;
        ``"error"`` raises :class:`imgclf.exceptions.ImageFileError` naming
        each. Prediction always raises: one answer is owed per sample.
    cache : None, "memory" or path, default=None
        For file paths: ``None`` streams every epoch from disk (bounded
        memory); ``"memory"`` decodes the files once into a uint8 array
        (fast epochs, ``n * h * w * c`` bytes); a folder decodes them once
        into a ``.npy`` file there, reused by later fits on the same files
        (cross-validation, grid search) and read back by memory map.
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
    filters : int, default=32
        Width of the first stage; each further stage doubles it (at most 512).
    depth : int, optional
        Number of downsampling stages; ``None`` sizes it to the input.
    dropout : float, default=0.3
        Dropout rate before the classification layer.
    tta : int, default=0
        Test-time augmentation in ``predict`` and ``predict_proba``: 0 (or 1)
        predicts on the images as given; ``n`` averages the class
        probabilities over them and ``n - 1`` fixed views: first the mirror
        image when ``augment`` flips horizontally, then shifts by 1/16 of the
        image side (2 px at 28 px) in the four directions and the four
        diagonals (and their mirror images). At most 9 views, 18 with flips.
        Costs ``n`` times the prediction time; it can be set after fitting
        (``clf.set_params(tta=4)``). See :ref:`tta` for when it pays.
    calibrate : bool, default=True
        After training, fit one temperature ``T`` on the hold-out's logits
        (the ``T`` minimising their negative log-likelihood; the weights are
        not trained again) and divide the logits by it inside the network,
        before the softmax: ``predict_proba`` gives calibrated probabilities,
        in saved, pickled and exported models too, while ``predict`` is
        unchanged. ``temperature_`` holds ``T``: 1.0 with ``calibrate=False``
        or without a hold-out (``validation_fraction=0.0``, or too few images
        per class). See "Calibrated probabilities" in the models guide.

    Attributes
    ----------
    model_ : keras.Model
        The trained network. It takes float32 images in the training data's
        pixel units (0-255 for uint8 and files).
    classes_ : ndarray of shape (n_classes,)
        Class labels, in the order of ``predict_proba``'s columns (for
        multi-label targets, the labels: sorted, or ``arange(n_labels)`` for
        an indicator matrix).
    batch_size_ : int
        The batch size used in the last fit.
    epochs_ : int
        The maximum epochs of the last fit (``epochs``, or what ``"auto"``
        made of it).
    history_ : dict of str to list of float
        Per-epoch training metrics (``loss``, ``accuracy``, ``val_loss``,
        ``val_accuracy``).
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
    interrupted_ : bool
        True when the last fit was stopped by an error or ``KeyboardInterrupt``
        after its first epoch: the network then holds the best weights reached
        so far and ``history_`` the epochs that ran (see :meth:`fit`).
    card_ : imgclf._card.ModelCard
        The model card, a dict: classes and training and hold-out images per
        class, input size, parameters, the kept epoch's hold-out loss and
        accuracy, the temperature once calibrated, library versions, a
        fingerprint of the training data and the date. Saved with the model;
        ``imgclf info MODEL`` prints it (see :doc:`/serving`).
    image_size_ : (int, int)
        Height and width the network takes.
    n_channels_ : int
        Channels the network takes (1 or 3).
    input_range_ : (float, float)
        Pixel values mapped to 0 and 1 by the network's first layer.
    temperature_ : float
        The temperature dividing the logits before the softmax (see
        ``calibrate``); 1.0 when none was fitted.
    precision_ : str
        The Keras dtype policy the network was built with (``"float32"``,
        ``"mixed_float16"`` or ``"mixed_bfloat16"``).
    multilabel_ : bool
        True when fitted on multi-label targets (a 0/1 indicator matrix or
        label collections): one sigmoid per label, and ``predict`` returns
        the indicator matrix.
    thresholds_ : ndarray of shape (n_labels,)
        Multi-label fits only: each label's decision threshold on its
        probability, tuned on the hold-out for the best F1 (0.5 without a
        hold-out). Set it to trade precision for recall.
    n_features_in_ : int
        Number of features, only when fitted on flattened ``(n, d)`` input.
    feature_names_in_ : ndarray of str
        Column names, only when fitted on a DataFrame with string columns.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from imgclf import CNNClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = CNNClassifier(epochs=2, random_state=0).fit(X[:500], y[:500])
    >>> clf.predict(X[:3]).shape
    (3,)
    >>> sorted(clf.history_)
    ['accuracy', 'learning_rate', 'loss', 'val_accuracy', 'val_loss']
    """

    # transform returns the pooled last stage, the classifier's input.
    _features_layer = POOL_LAYER

    _parameter_rules = {
        **BaseImageClassifier._parameter_rules,
        "epochs": param(
            Options("auto"),
            Integer(1),
            expected="an integer >= 1 or 'auto' (about 1,600 steps, 3 to 30 epochs)",
        ),
        "filters": param(Integer(1), expected="an integer >= 1, e.g. 32"),
        "depth": param(NONE, Integer(0)),
        "dropout": DROPOUT,
    }

    def __init__(
        self,
        *,
        epochs: int | str = "auto",
        batch_size="auto",
        learning_rate: float = 3e-3,
        lr_schedule: str | None = DEFAULT_LR_SCHEDULE,
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
        filters: int = 32,
        depth: int | None = None,
        dropout: float = 0.3,
        tta: int = 0,
        calibrate: bool = True,
    ):
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
        self.filters = filters
        self.depth = depth
        self.dropout = dropout
        self.tta = tta
        self.calibrate = calibrate

    def _build_network(self, x, n_classes: int):
        layers = get_keras().layers
        height, width = self.image_size_
        stages = self.depth if self.depth is not None else _n_stages(min(height, width))
        for stage in range(stages):
            width_ = min(self.filters * 2**stage, 512)
            x = _conv_bn_relu(layers, x, width_, f"stage{stage}")
            pool = (2 if x.shape[1] >= 2 else 1, 2 if x.shape[2] >= 2 else 1)
            x = layers.MaxPooling2D(pool, name=f"stage{stage}_pool")(x)
        x = _conv_bn_relu(layers, x, min(self.filters * 2**stages, 512), "top")
        x = layers.GlobalAveragePooling2D(name=POOL_LAYER)(x)
        if self.dropout:
            x = layers.Dropout(self.dropout, name=DROPOUT_LAYER)(x)
        # float32 whatever the precision: a float16 softmax loses probability mass.
        x = layers.Dense(n_classes, dtype="float32", name=CLASSIFIER_LAYER)(x)
        for layer in output_layers(output_activation(self)):  # temperature, then activation
            x = layer(x)
        return x


def _conv_bn_relu(layers, x, filters: int, name: str):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)
