"""``TransferClassifier(refit=...)``: after a fit with a small hold-out, a
second fit on every image that keeps the first fit's decisions (fine-tuning
or not, the temperature, multi-label thresholds)."""

import warnings

import numpy as np
import pytest

from imgclf import TransferClassifier
from imgclf._calibration import get_temperature
from imgclf._refit import REFIT_MAX_PER_CLASS, holdout_per_class, refit_due


def _data(small_digits, per_class):
    X, y = small_digits
    rows = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(3)])
    return X[rows], y[rows]


def _clf(tiny_backbone, **params):
    base = dict(backbone=tiny_backbone, epochs=3, fine_tune_epochs=1, learning_rate=1e-2)
    return TransferClassifier(random_state=0, **{**base, **params})


class _Fits:
    """Records each fit's validation_fraction and fine_tune_epochs."""

    def __init__(self, monkeypatch):
        from imgclf._base import BaseImageClassifier

        self.calls = []
        original = BaseImageClassifier.fit

        def fit(est, X, y, sample_weight=None):
            self.calls.append(
                (est.validation_fraction, est.fine_tune_epochs, est.epochs, est.early_stopping)
            )
            return original(est, X, y, sample_weight)

        monkeypatch.setattr(BaseImageClassifier, "fit", fit)


def test_the_rule():
    y = np.repeat([0, 1, 2], 50)
    assert holdout_per_class(y, 15) == 5.0
    assert holdout_per_class(np.repeat([0, 2], 50), 10) == 5.0  # absent classes do not count
    assert refit_due("auto", REFIT_MAX_PER_CLASS)
    assert not refit_due("auto", REFIT_MAX_PER_CLASS + 0.1)
    assert refit_due(True, 50.0) and not refit_due(False, 1.0)
    assert refit_due(np.True_, 50.0) and not refit_due(np.False_, 1.0)  # e.g. from a grid
    assert not refit_due(True, None)  # no hold-out, nothing to refit after


def test_auto_refits_a_small_holdout_on_every_image(tiny_backbone, small_digits, monkeypatch):
    X, y = _data(small_digits, 60)  # 10 % hold-out: 6 per class
    fits = _Fits(monkeypatch)
    clf = _clf(tiny_backbone).fit(X, y)
    assert [c[0] for c in fits.calls] == [0.1, 0.0]
    assert fits.calls[1][3] is False  # the refit runs its epochs without early stopping
    assert clf.refitted_ is True
    assert clf.validation_fraction == 0.1 and clf.checkpoint is None  # parameters restored
    assert "val_loss" not in clf.history_  # the refit's history
    # The refit trained on every image, with the first fit's temperature.
    first = _clf(tiny_backbone, refit=False).fit(X, y)
    assert first.refitted_ is False and "val_loss" in first.history_
    assert clf.temperature_ == pytest.approx(first.temperature_, rel=1e-6)
    assert get_temperature(clf.model_) == pytest.approx(first.temperature_, rel=1e-6)
    assert clf.card_["train_per_class"] == [60, 60, 60]


def test_auto_keeps_a_large_enough_holdout(tiny_backbone, small_digits, monkeypatch):
    X, y = _data(small_digits, 60)
    fits = _Fits(monkeypatch)
    params = dict(fine_tune_epochs=0, validation_fraction=0.2)  # 12 per class held out
    clf = _clf(tiny_backbone, **params).fit(X, y)
    assert len(fits.calls) == 1 and clf.refitted_ is False and "val_loss" in clf.history_
    # refit=True refits it anyway; without a hold-out there is nothing to refit after.
    clf = _clf(tiny_backbone, **params, refit=True).fit(X, y)
    assert clf.refitted_ is True
    clf = _clf(tiny_backbone, fine_tune_epochs=0, refit=True, validation_fraction=0.0).fit(X, y)
    assert clf.refitted_ is False and len(fits.calls) == 4


def test_the_refit_runs_the_epochs_the_first_fit_kept(tiny_backbone, small_digits, monkeypatch):
    X, y = _data(small_digits, 60)
    fits = _Fits(monkeypatch)
    monkeypatch.setattr(TransferClassifier, "_kept_per_stage", lambda self: (2, 0))
    clf = _clf(tiny_backbone).fit(X, y)
    # First fit as configured; the refit: no hold-out, 2 frozen epochs, no
    # fine-tuning (its weights were not kept), no early stopping.
    assert fits.calls == [(0.1, 1, 3, True), (0.0, 0, 2, False)]
    assert clf.history_["stage"] == [1.0, 1.0]
    assert (clf.fine_tune_epochs, clf.epochs, clf.early_stopping) == (1, 3, True)


def test_kept_per_stage_reads_the_history(tiny_backbone, small_digits):
    from imgclf._refit import fine_tuning_kept

    X, y = _data(small_digits, 100)
    clf = _clf(tiny_backbone, refit=False, epochs=4, fine_tune_epochs=3).fit(X, y)
    # Frozen-stage hold-out losses best at its 2nd epoch; fine-tuning's at its 3rd.
    clf.history_ = {
        "loss": [1.0] * 7,
        "val_loss": [0.9, 0.5, 0.6, 0.7, 0.45, 0.44, 0.3],
        "stage": [1.0] * 4 + [2.0] * 3,
    }
    clf.best_epoch_ = 6
    assert fine_tuning_kept(clf) and clf._kept_per_stage() == (2, 3)
    clf.best_epoch_ = 1  # the frozen stage's weights were kept
    assert not fine_tuning_kept(clf) and clf._kept_per_stage() == (2, 0)


def test_a_failed_refit_keeps_the_first_fit(tiny_backbone, small_digits, monkeypatch):
    from imgclf._base import BaseImageClassifier

    X, y = _data(small_digits, 60)
    original = BaseImageClassifier.fit

    def fit(est, X, y, sample_weight=None):
        result = original(est, X, y, sample_weight)
        if est.validation_fraction == 0.0:  # the refit has replaced the network: then stop
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(BaseImageClassifier, "fit", fit)
    clf = _clf(tiny_backbone)
    with pytest.warns(UserWarning, match="keeps the network of the fit with the hold-out") as w:
        with pytest.raises(KeyboardInterrupt):
            clf.fit(X, y)
    assert not [x for x in w if "The estimator keeps the new network" in str(x.message)]
    # The first fit's network, complete and calibrated; the parameters as given.
    assert clf.refitted_ is False and "val_loss" in clf.history_
    assert clf.get_params()["validation_fraction"] == 0.1
    assert clf.get_params()["fine_tune_epochs"] == 1
    assert clf.predict(X[:5]).shape == (5,)


def test_no_refit_on_a_warm_start(tiny_backbone, small_digits, monkeypatch):
    X, y = _data(small_digits, 60)
    clf = _clf(tiny_backbone, warm_start=True, fine_tune_epochs=0).fit(X, y)
    assert clf.refitted_ is True  # the first fit is not a warm one
    fits = _Fits(monkeypatch)
    # Its hold-out was trained on by the refitted network: said, not hidden.
    with pytest.warns(UserWarning, match="refitted on every image"):
        clf.fit(X, y)
    assert len(fits.calls) == 1 and clf.refitted_ is False


def test_refit_survives_save_and_load(tiny_backbone, small_digits, tmp_path):
    from imgclf import load

    X, y = _data(small_digits, 60)
    clf = _clf(tiny_backbone, fine_tune_epochs=0).fit(X, y)
    path = tmp_path / "m.imgclf"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.save(path)
        back = load(path)
    assert not [w for w in caught if "refitted_" in str(w.message)]  # a known attribute
    assert back.refitted_ is True and back.refit == "auto"
    np.testing.assert_allclose(back.predict_proba(X[:8]), clf.predict_proba(X[:8]), atol=1e-6)


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_refit_is_checked(bad, tiny_backbone, small_digits):
    X, y = _data(small_digits, 20)
    with pytest.raises(Exception, match="refit"):
        _clf(tiny_backbone, refit=bad).fit(X, y)


def test_the_card_says_what_the_holdout_fit_judged(tiny_backbone, small_digits):
    X, y = _data(small_digits, 60)
    clf = _clf(tiny_backbone, fine_tune_epochs=0).fit(X, y)
    fit = clf.card_["fit"]
    assert fit["refit_after_holdout_of"] == 18  # 10 % of 180 images
    assert fit["monitor"] == "loss" and "val_loss" not in fit  # the refit's own entry
    first = _clf(tiny_backbone, fine_tune_epochs=0, refit=False).fit(X, y).card_["fit"]
    assert fit["holdout_fit_val_loss"] == pytest.approx(first["val_loss"], rel=1e-6)
    assert fit["holdout_fit_epoch_kept"] == first["epoch_kept"]
    text = clf.card_.to_text()
    assert "Refitted on every image (refit), after a fit that held out 18 images" in text
    assert f"val_loss {first['val_loss']:.4g}" in text
    assert "Refitted" not in _clf(tiny_backbone, refit=False).fit(X, y).card_.to_text()


@pytest.mark.slow
def test_cli_train_says_it_refitted(tmp_path, capsys):
    from test_cli import _write_images, run

    data = _write_images(tmp_path / "imgs", per_class=10)
    argv = ["train", str(data), "--model", "transfer", "--backbone", "mobilenet_v3_small"]
    argv += ["--weights", "none", "--image-size", "32", "--epochs", "1", "--fine-tune-epochs", "0"]
    argv += ["--validation-fraction", "0.5", "--quiet", "--out", str(tmp_path / "t.imgclf")]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert "on every image, after a fit with a hold-out of 15 images chose them" in out
    code, out, err = run(argv + ["--refit", "no"], capsys)
    assert code == 0, err
    assert "validation accuracy" in out and "on every image" not in out
    code, out, err = run(["train", str(data), "--refit", "yes", "--out", "m"], capsys)
    assert code != 0 and "are for --model transfer" in err


def test_a_multilabel_refit_keeps_the_tuned_thresholds(tiny_backbone):
    from _images import quadrants

    X, Y = quadrants(400, seed=0)  # 40 held out: under 10 per stratum (rarest label)
    first = _clf(tiny_backbone, fine_tune_epochs=0, refit=False).fit(X, Y)
    clf = _clf(tiny_backbone, fine_tune_epochs=0).fit(X, Y)
    assert clf.refitted_ is True and first.refitted_ is False
    assert not np.allclose(first.thresholds_, 0.5)  # tuned on the hold-out
    np.testing.assert_allclose(clf.thresholds_, first.thresholds_)
    assert clf.card_["fit"]["refit_after_holdout_of"] == 40  # images, not label counts
    assert clf.temperature_ == 1.0  # multi-label fits tune thresholds, not a temperature


def test_a_refit_stopped_after_an_epoch_keeps_the_first_fit(tiny_backbone, small_digits):
    import keras

    class StopTheRefit(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if "val_loss" not in (logs or {}):  # only the refit has no hold-out
                raise KeyboardInterrupt

    X, y = _data(small_digits, 60)
    clf = _clf(tiny_backbone, fine_tune_epochs=0, callbacks=[StopTheRefit()])
    with pytest.warns(UserWarning, match="keeps the network of the fit with the hold-out") as w:
        with pytest.raises(KeyboardInterrupt):
            clf.fit(X, y)
    # One account of what happened, not the base's "keeps the new network" too.
    assert not [x for x in w if "The estimator keeps the new network" in str(x.message)]
    assert clf.refitted_ is False and clf.interrupted_ is False and "val_loss" in clf.history_
