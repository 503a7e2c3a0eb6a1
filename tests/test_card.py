"""The model card: ``clf.card_`` after fit, saved and loaded, ``imgclf info``,
files without a card, and the card's schema check on load."""

import datetime
import json
import zipfile

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import imgclf
from imgclf import CNNClassifier
from imgclf._checkpoint import data_fingerprint
from imgclf._validation import Images
from imgclf.cli import main
from imgclf.exceptions import ModelFileError


@pytest.fixture(scope="module")
def fitted(small_digits):
    X, y = small_digits
    labels = np.array(["zero", "one", "two"])[y]
    clf = CNNClassifier(epochs=2, filters=4, validation_fraction=0.2, random_state=0)
    return clf.fit(X, labels), X, labels


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    path = tmp_path_factory.mktemp("card") / "model.imgclf"
    fitted[0].save(path)
    return path


def _edit_card(source, target, edit):
    """Copy the saved file ``source`` to ``target`` with ``edit(manifest)`` applied."""
    with zipfile.ZipFile(source) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    manifest = json.loads(members["imgclf.json"])
    edit(manifest)
    members["imgclf.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(target, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return target


def test_card_after_fit_describes_the_fit(fitted):
    clf, X, labels = fitted
    card = clf.card_
    assert card["estimator"] == "CNNClassifier"
    assert card["classes"] == clf.classes_.tolist() == ["one", "two", "zero"]
    train, held = np.array(card["train_per_class"]), np.array(card["holdout_per_class"])
    assert train.sum() + held.sum() == len(labels)
    assert held.sum() == round(0.2 * len(labels))
    expected = [np.sum(labels == c) for c in clf.classes_]
    assert (train + held).tolist() == expected
    assert card["image_size"] == [8, 8] and card["n_channels"] == 1
    assert card["params"]["epochs"] == 2 and card["params"]["validation_fraction"] == 0.2
    assert card["params"]["image_size"] is None
    fit = card["fit"]
    kept = fit["epoch_kept"]
    assert fit["epochs_run"] == len(clf.history_["loss"]) and 1 <= kept <= fit["epochs_run"]
    assert fit["monitor"] == "val_loss"
    assert fit["val_loss"] == pytest.approx(min(clf.history_["val_loss"]))
    assert fit["val_accuracy"] == clf.history_["val_accuracy"][kept - 1]
    assert set(card["versions"]) == {"imgclf", "keras", "tensorflow", "numpy", "python"}
    assert card["versions"]["numpy"] == np.__version__
    assert card["data_fingerprint"] == data_fingerprint(Images(array=X), labels)
    when = datetime.datetime.fromisoformat(card["trained_at"])
    assert abs(datetime.datetime.now(datetime.timezone.utc) - when).total_seconds() < 3600
    assert card["temperature"] == pytest.approx(clf.temperature_) and card["interrupted"] is False
    json.dumps(card)  # plain JSON values


def test_the_fingerprint_follows_the_data(fitted):
    clf, X, labels = fitted
    fingerprint = clf.card_["data_fingerprint"]
    assert fingerprint != data_fingerprint(Images(array=X[::-1]), labels[::-1])
    assert fingerprint != data_fingerprint(Images(array=X), labels[::-1])


def test_temperature_is_read_off_the_estimator(fitted):
    clf = fitted[0]
    fitted_temperature = clf.temperature_
    assert clf.card_["temperature"] == pytest.approx(fitted_temperature)
    clf.temperature_ = 1.5  # read each time, not stored at fit
    try:
        assert clf.card_["temperature"] == 1.5
        assert "Temperature: 1.5" in clf.card_.to_text()
    finally:
        clf.temperature_ = fitted_temperature


def test_an_unfitted_estimator_has_no_card():
    clf = CNNClassifier()
    assert not hasattr(clf, "card_")
    with pytest.raises(NotFittedError, match="call fit first"):
        clf.card_  # noqa: B018


def test_the_card_is_saved_and_loaded(fitted, saved):
    clf = fitted[0]
    with zipfile.ZipFile(saved) as zf:
        stored = json.loads(zf.read("imgclf.json"))["card"]
    assert stored == json.loads(json.dumps(clf.card_))
    again = imgclf.load(saved)
    assert again.card_ == clf.card_
    assert type(again.card_).__name__ == "ModelCard"


def test_a_file_without_a_card_still_loads(fitted, saved, tmp_path):
    clf, X, _ = fitted
    old = _edit_card(saved, tmp_path / "old.imgclf", lambda m: m.pop("card"))
    again = imgclf.load(old)
    np.testing.assert_allclose(again.predict_proba(X[:5]), clf.predict_proba(X[:5]), atol=1e-6)
    card = again.card_
    assert card["classes"] == clf.card_["classes"] and card["image_size"] == [8, 8]
    for key in ("train_per_class", "holdout_per_class", "fit", "data_fingerprint", "trained_at"):
        assert card[key] is None, key
    assert card["versions"]["keras"] == clf.card_["versions"]["keras"]
    assert "Fit: not recorded" in card.to_text() and "| zero | ? | ? |" in card.to_markdown()


@pytest.mark.parametrize(
    "field, value, named",
    [
        ("card", ["not", "an", "object"], "card"),
        ("train_per_class", [1, 2], "card.train_per_class"),
        ("holdout_per_class", [1, -2, 3], "card.holdout_per_class"),
        ("classes", ["zero", "one", "two"], "card.classes"),
        ("image_size", [8, 9], "card.image_size"),
        ("trained_at", "x" * 5000, "card.trained_at"),
        ("data_fingerprint", 12, "card.data_fingerprint"),
        ("params", {"epochs": {"nested": 1}}, "card.params"),
        ("params", {f"p{i}": 1 for i in range(300)}, "card.params"),
        ("fit", {"val_loss": "x" * 2000}, "card.fit"),
        ("versions", {"keras": 3}, "card.versions"),
        ("temperature", -1.0, "card.temperature"),
        ("interrupted", "no", "card.interrupted"),
    ],
)
def test_a_bad_card_field_is_named(saved, tmp_path, field, value, named):
    def edit(manifest):
        if field == "card":
            manifest["card"] = value
        else:
            manifest["card"][field] = value

    bad = _edit_card(saved, tmp_path / "bad.imgclf", edit)
    with pytest.raises(ModelFileError, match=rf"imgclf\.json {named}: expected"):
        imgclf.load(bad)


def test_unknown_card_fields_are_ignored(fitted, saved, tmp_path):
    later = _edit_card(
        saved, tmp_path / "later.imgclf", lambda m: m["card"].update(license="CC-BY")
    )
    assert "license" not in imgclf.load(later).card_


def test_markdown_escapes_table_cells(fitted):
    card = fitted[0].card_
    card["classes"] = ["a|b", "c", "d"]
    text = card.to_markdown()
    assert "| a\\|b |" in text and text.startswith("# Model card: CNNClassifier")


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_imgclf_info_prints_the_card(fitted, saved, capsys, fmt):
    assert main(["info", str(saved), "--format", fmt]) == 0
    out = capsys.readouterr().out
    card = fitted[0].card_
    if fmt == "json":
        assert json.loads(out) == json.loads(json.dumps(card))
    else:
        assert card["data_fingerprint"] in out and "zero" in out
        assert ("| zero |" in out) == (fmt == "markdown")


def test_imgclf_info_refuses_a_pickle_unless_trusted(fitted, tmp_path, capsys):
    import joblib

    path = tmp_path / "model.pkl"
    joblib.dump(fitted[0], path)
    assert main(["info", str(path)]) == 1
    assert "trusted" in capsys.readouterr().err
    assert main(["info", str(path), "--trusted", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["classes"] == ["one", "two", "zero"]


def test_without_a_hold_out_the_counts_are_zero():
    from imgclf._card import fit_facts

    facts = fit_facts("f" * 64, np.array([0, 1, 1, 2]), np.arange(4), None, 3)
    assert facts["train_per_class"] == [1, 2, 1] and facts["holdout_per_class"] == [0, 0, 0]


@pytest.mark.slow
def test_a_transfer_classifier_s_card_round_trips(fitted_mobilenet_transfer, tmp_path):
    clf, X = fitted_mobilenet_transfer
    card = clf.card_
    assert card["estimator"] == "TransferClassifier" and card["n_channels"] == 3
    assert card["params"]["backbone"] == "mobilenet_v3_small"
    assert sum(card["train_per_class"]) + sum(card["holdout_per_class"]) == len(X)
    assert card["fit"]["epochs_run"] == len(clf.history_["loss"])
    clf.save(tmp_path / "transfer.imgclf")
    assert imgclf.load(tmp_path / "transfer.imgclf").card_ == card
