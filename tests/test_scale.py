"""Beyond one process: searches on joblib workers and Dask, precision, distribute.

GPU-only behaviour (float16 on Tensor Cores, memory growth, MirroredStrategy
over GPUs) cannot run here: the functions that decide it are tested with
stand-in devices, and MirroredStrategy runs over a CPU split into two
logical devices in a subprocess.
"""

import os
import pickle
import subprocess
import sys
import warnings

import joblib
import numpy as np
import pytest
from PIL import Image
from sklearn.model_selection import GridSearchCV, cross_validate

import imgclf
from imgclf import CNNClassifier, TransferClassifier
from imgclf import _devices as devices
from imgclf._backend import (
    configure_process,
    environment_defaults,
    get_keras,
    get_tf,
    thread_share,
)
from imgclf.exceptions import InputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------- process setup
def test_thread_share_reads_the_launchers_omp_num_threads():
    assert thread_share({"OMP_NUM_THREADS": "3"}) == 3
    assert thread_share({}) is None
    assert thread_share({"OMP_NUM_THREADS": "0"}) is None
    assert thread_share({"OMP_NUM_THREADS": "many"}) is None


class _FakeConfig:
    """Records what configure_process asks of tf.config."""

    def __init__(self, gpus=(), started=False):
        self.calls = []
        self.gpus = list(gpus)
        outer = self

        class Threading:
            def set_intra_op_parallelism_threads(self, n):
                if started:
                    raise RuntimeError("Intra op parallelism cannot be modified after init")
                outer.calls.append(("intra", n))

            def set_inter_op_parallelism_threads(self, n):
                outer.calls.append(("inter", n))

        class Experimental:
            def set_memory_growth(self, device, enable):
                if device == "virtual":
                    raise ValueError("Cannot set memory growth on a device with virtual devices")
                outer.calls.append(("growth", device, enable))

        self.threading = Threading()
        self.experimental = Experimental()

    def list_physical_devices(self, kind):
        return self.gpus if kind == "GPU" else []


def test_configure_process_limits_threads_and_grows_gpu_memory():
    config = _FakeConfig(gpus=["gpu0", "gpu1"])
    done = configure_process(config, {"OMP_NUM_THREADS": "2"})
    assert config.calls == [
        ("intra", 2),
        ("inter", 2),
        ("growth", "gpu0", True),
        ("growth", "gpu1", True),
    ]
    assert done == {"threads": 2, "memory_growth": ["gpu0", "gpu1"]}


def test_configure_process_leaves_a_started_runtime_and_the_users_choices():
    config = _FakeConfig(gpus=["gpu0", "virtual"], started=True)
    # Runtime already started: no thread change, no crash; a GPU split into
    # virtual devices by the user keeps its configuration.
    assert configure_process(config, {"OMP_NUM_THREADS": "1"}) == {"memory_growth": ["gpu0"]}
    config = _FakeConfig(gpus=["gpu0"])
    assert configure_process(config, {"TF_FORCE_GPU_ALLOW_GROWTH": "false"}) == {}
    assert config.calls == []


def test_environment_defaults_turn_onednn_on_unless_the_user_chose():
    environ = {"KERAS_BACKEND": "tensorflow"}
    done = environment_defaults(environ)
    assert environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    assert done == {"TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    environ = {"TF_ENABLE_ONEDNN_OPTS": "0"}
    environment_defaults(environ)
    assert environ["TF_ENABLE_ONEDNN_OPTS"] == "0"
    # The process this test runs in imported TensorFlow through imgclf.
    get_tf()
    assert os.environ.get("TF_ENABLE_ONEDNN_OPTS") in ("0", "1")


def _tensorflow_threads():
    tf = get_tf()
    return (
        os.environ.get("OMP_NUM_THREADS"),
        tf.config.threading.get_intra_op_parallelism_threads(),
        tf.config.threading.get_inter_op_parallelism_threads(),
    )


@pytest.mark.slow
def test_loky_workers_run_tensorflow_on_their_share_of_the_cores():
    share = max((os.cpu_count() or 1) // 2, 1)
    results = joblib.Parallel(n_jobs=2)(joblib.delayed(_tensorflow_threads)() for _ in range(2))
    assert results == [(str(share), share, share)] * 2


# --------------------------------------------------------------- searches
@pytest.fixture(scope="module")
def digit_files(tmp_path_factory):
    """90 digits of classes 0-2 as 8x8 PNG files, and their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    keep = np.flatnonzero(data.target < 3)[:90]
    folder = tmp_path_factory.mktemp("digit_files")
    paths = []
    for i in keep:
        path = str(folder / f"{i}.png")
        Image.fromarray(np.round(data.images[i] / 16 * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return np.array(paths), data.target[keep]


def _search():
    return GridSearchCV(
        CNNClassifier(epochs=1, filters=4, validation_fraction=0.0, random_state=0),
        {"filters": [4, 8]},
        cv=2,
    )


@pytest.mark.slow
def test_search_and_cross_validation_on_two_worker_processes(small_digits, digit_files):
    X, y = small_digits[0][:120], small_digits[1][:120]
    search = _search().set_params(n_jobs=2).fit(X, y)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.best_estimator_.predict(X[:5]).shape == (5,)
    again = pickle.loads(pickle.dumps(search.best_estimator_))
    np.testing.assert_allclose(
        again.predict_proba(X[:5]), search.best_estimator_.predict_proba(X[:5])
    )

    # Estimators fitted in the workers travel back to this process and predict here.
    paths, labels = digit_files
    result = cross_validate(
        CNNClassifier(epochs=1, filters=4, random_state=0),
        paths,
        labels,
        cv=2,
        n_jobs=2,
        return_estimator=True,
    )
    assert len(result["estimator"]) == 2
    for fitted in result["estimator"]:
        proba = fitted.predict_proba(paths[:4])
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_search_on_a_dask_cluster_over_file_paths(digit_files):
    distributed = pytest.importorskip("distributed")
    paths, labels = digit_files
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            resources={"GPU": 1},  # as on a GPU cluster: one fit per worker at a time
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        # Dask's nanny gives each worker process one thread's share.
        assert set(client.run(_tensorflow_threads).values()) == {("1", 1, 1)}
        with joblib.parallel_backend("dask", resources={"GPU": 1}):
            search = _search().fit(paths, labels)
        assert set(client.run(lambda: os.getpid()).values()) != {os.getpid()}
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.best_estimator_.predict(paths[:3]).shape == (3,)


# -------------------------------------------------------------- precision
@pytest.fixture(scope="module")
def bfloat16_fit():
    from sklearn.datasets import load_digits

    data = load_digits()
    keep = np.flatnonzero(data.target < 3)[:150]
    X = np.round(data.images[keep] / 16 * 255).astype(np.uint8)[..., None]
    keras = get_keras()
    before = keras.config.dtype_policy().name
    clf = CNNClassifier(epochs=2, filters=4, precision="mixed_bfloat16", random_state=0)
    clf.fit(X, data.target[keep])
    return clf, X, before, keras.config.dtype_policy().name


def test_bfloat16_trains_in_bfloat16_and_answers_in_float32(bfloat16_fit):
    clf, X, before, after = bfloat16_fit
    assert before == after == "float32"
    assert clf.precision_ == "mixed_bfloat16"
    assert clf.model_.get_layer("stage0_conv").compute_dtype == "bfloat16"
    assert clf.model_.get_layer("classifier").compute_dtype == "float32"
    assert clf.model_.output.dtype == "float32"
    proba = clf.predict_proba(X[:20])
    assert proba.dtype.kind == "f"
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_bfloat16_model_saves_loads_and_exports(bfloat16_fit, tmp_path):
    import tensorflow as tf

    clf, X, _, _ = bfloat16_fit
    proba = clf.predict_proba(X[:20])
    np.testing.assert_allclose(pickle.loads(pickle.dumps(clf)).predict_proba(X[:20]), proba)
    clf.save(tmp_path / "m.imgclf")
    loaded = imgclf.load(tmp_path / "m.imgclf")
    assert loaded.precision_ == "mixed_bfloat16"
    np.testing.assert_allclose(loaded.predict_proba(X[:20]), proba)

    # Exported as float32 (TFLite has no bfloat16 kernels): close to the
    # bfloat16 answers, not equal to them.
    clf.export(tmp_path / "sm")
    serve = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    exported = serve(image=tf.constant(X[:20]))["probabilities"].numpy()
    np.testing.assert_allclose(exported, proba, atol=0.05)
    clf.export(tmp_path / "m.tflite", format="tflite")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(tmp_path / "m.tflite"))
    lite = interpreter.get_signature_runner("serving_default")(image=X[:20])["probabilities"]
    np.testing.assert_allclose(lite, exported, atol=1e-5)
    assert clf.model_.get_layer("stage0_conv").compute_dtype == "bfloat16"  # export copied it


def test_precision_never_leaks_into_the_users_policy_or_the_next_fit(small_digits):
    X, y = small_digits[0][:60], small_digits[1][:60]
    keras = get_keras()
    keras.config.set_dtype_policy("mixed_bfloat16")  # the user's own choice
    try:
        clf = CNNClassifier(epochs=1, filters=4, precision="float32", random_state=0).fit(X, y)
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
        assert clf.model_.get_layer("stage0_conv").compute_dtype == "float32"
    finally:
        keras.config.set_dtype_policy("float32")
    mixed = CNNClassifier(epochs=1, filters=4, precision="mixed_bfloat16").fit(X, y)
    plain = CNNClassifier(epochs=1, filters=4).fit(X, y)  # "auto" on a CPU
    assert mixed.precision_ == "mixed_bfloat16" and plain.precision_ == "float32"
    assert plain.model_.get_layer("stage0_conv").compute_dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"


def test_float16_on_a_cpu_warns_once_and_scales_the_loss(small_digits, monkeypatch):
    monkeypatch.setattr(devices, "_WARNED", set())
    X, y = small_digits[0][:60], small_digits[1][:60]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            clf = CNNClassifier(epochs=1, filters=4, precision="mixed_float16").fit(X, y)
    slow = [w for w in caught if "precision='mixed_float16'" in str(w.message)]
    assert len(slow) == 1 and "without a GPU" in str(slow[0].message)
    assert isinstance(clf.model_.optimizer, get_keras().optimizers.LossScaleOptimizer)
    np.testing.assert_allclose(clf.predict_proba(X[:5]).sum(axis=1), 1.0, atol=1e-5)


def test_transfer_classifier_in_bfloat16_both_stages(small_digits):
    X, y = small_digits[0][:60], small_digits[1][:60]
    keras = get_keras()
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    own = keras.Model(inputs, x)
    clf = TransferClassifier(
        backbone=own,
        weights=None,
        epochs=2,
        fine_tune_epochs=1,
        fine_tune_layers=1.0,
        precision="mixed_bfloat16",
        random_state=0,
    ).fit(X, y)
    assert clf.history_["stage"][-1] == 2.0
    assert clf.model_.get_layer("classifier").compute_dtype == "float32"
    np.testing.assert_allclose(clf.predict_proba(X[:5]).sum(axis=1), 1.0, atol=1e-5)
    assert keras.config.dtype_policy().name == "float32"


class _Gpu:
    def __init__(self, capability):
        self.capability = capability


def test_auto_precision_picks_float16_only_on_tensor_core_gpus(monkeypatch):
    tf = get_tf()
    monkeypatch.setattr(
        tf.config.experimental,
        "get_device_details",
        lambda gpu: {} if gpu.capability is None else {"compute_capability": gpu.capability},
    )
    assert devices.resolve_precision("auto", gpus=[]) == "float32"
    assert devices.resolve_precision("auto", gpus=[_Gpu((7, 5)), _Gpu((8, 0))]) == "mixed_float16"
    assert devices.resolve_precision("auto", gpus=[_Gpu((7, 5)), _Gpu((6, 1))]) == "float32"
    assert devices.resolve_precision("auto", gpus=[_Gpu(None)]) == "float32"
    assert devices.resolve_precision("mixed_bfloat16", gpus=[]) == "mixed_bfloat16"


# ------------------------------------------------------------- distribute
def test_a_strategy_over_missing_devices_is_refused_naming_them(small_digits):
    tf = get_tf()
    strategy = tf.distribute.MirroredStrategy(["/gpu:6", "/gpu:7"])
    with pytest.raises(InputError, match=r"GPU:6.*does not have.*list_logical_devices"):
        CNNClassifier(epochs=1, distribute=strategy).fit(*small_digits)


def test_auto_distribute_on_one_device_is_quiet_and_a_strategy_is_not_pickled(small_digits):
    X, y = small_digits[0][:60], small_digits[1][:60]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        clf = CNNClassifier(epochs=1, filters=4, distribute="auto").fit(X, y)
    tf = get_tf()
    assert clf.model_.distribute_strategy is tf.distribute.get_strategy()
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with_strategy = CNNClassifier(epochs=1, filters=4, distribute=strategy)
    assert pickle.loads(pickle.dumps(with_strategy)).distribute is None
    assert with_strategy.distribute is strategy


_MIRRORED = """
import os, sys, tempfile
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
import imgclf
import imgclf.exceptions

data = load_digits()
X, y = np.round(data.images * 255 / 16).astype(np.uint8)[..., None], data.target
n, epochs, filters, batch_size, compare = sys.argv[1:]
n = int(n)
X_tr, X_te, y_tr, y_te = train_test_split(X[:n], y[:n], test_size=0.3, stratify=y[:n], random_state=0)
kw = dict(epochs=int(epochs), filters=int(filters), batch_size=int(batch_size), random_state=0)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
two = imgclf.CNNClassifier(distribute=strategy, **kw).fit(X_tr, y_tr)
assert two.model_.distribute_strategy is strategy
assert two.batch_size_ == int(batch_size) // 2 * 2  # a multiple of the 2 replicas
try:  # a hold-out of 51 images (over 5 per class), less than one batch of 64 and odd
    imgclf.CNNClassifier(
        distribute=strategy, epochs=1, batch_size=64, validation_fraction=0.17
    ).fit(X[:300], y[:300])
    raise AssertionError("an uneven first batch went through")
except imgclf.exceptions.InputError as exc:
    assert "not a multiple of 2" in str(exc) and "batch_size" in str(exc), exc
proba = two.predict_proba(X_te)
folder = tempfile.mkdtemp()
two.save(os.path.join(folder, "m.imgclf"))
back = imgclf.load(os.path.join(folder, "m.imgclf"))
assert back.distribute is None
assert back.model_.distribute_strategy is tf.distribute.get_strategy()
np.testing.assert_allclose(back.predict_proba(X_te), proba, atol=1e-5)
two.export(os.path.join(folder, "sm"))
serve = tf.saved_model.load(os.path.join(folder, "sm")).signatures["serving_default"]
exported = serve(image=tf.constant(X_te))
np.testing.assert_allclose(exported["probabilities"].numpy(), proba, atol=1e-4)
one = imgclf.CNNClassifier(**kw).fit(X_tr, y_tr) if compare == "compare" else two
print("accuracy", two.score(X_te, y_te), one.score(X_te, y_te))
"""


def _run_mirrored(*args):
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, "-c", _MIRRORED, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("accuracy")][-1]
    return [float(v) for v in line.split()[1:]]


@pytest.mark.slow
def test_mirrored_strategy_over_two_logical_cpus_fits_saves_loads_and_exports():
    two, _ = _run_mirrored(300, 1, 4, 17, "no")
    assert 0 <= two <= 1


@pytest.mark.benchmark
def test_mirrored_strategy_matches_one_device_accuracy_on_digits():
    # Settings near the defaults (0.99 on digits); 2 replicas of 16 images.
    two, one = _run_mirrored(1797, 30, 16, 32, "compare")
    assert one > 0.95
    assert abs(two - one) <= 0.02
