"""``imgclf serve``'s JSON API (through Starlette's test client), its limits,
and the command's start-up errors. The page in a real browser is in
``test_serve_browser.py``."""

import base64
import io
import json
import os
import socket
import warnings
import zipfile

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
pytest.importorskip(
    "python_multipart", reason="the serve extra (python-multipart) is not installed"
)
with warnings.catch_warnings():  # Starlette's notice about httpx, its test client's transport
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

import imgclf  # noqa: E402
from imgclf import CNNClassifier  # noqa: E402
from imgclf._servepage import page  # noqa: E402
from imgclf._serving import create_app  # noqa: E402
from imgclf.cli import main  # noqa: E402


def colour_images(n, rng, size=(16, 16)):
    """``n`` noisy images, each mostly red, green or blue: its label."""
    y = np.arange(n) % 3
    X = rng.integers(0, 90, (n, *size, 3), dtype=np.uint8)
    X[np.arange(n), :, :, y] += 150
    return X, np.array(["red", "green", "blue"])[y]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny model of colour images (16x16 RGB), saved, and image files to send."""
    rng = np.random.default_rng(0)
    X, y = colour_images(90, rng)
    clf = CNNClassifier(epochs=2, filters=4, random_state=0).fit(X, y)
    folder = tmp_path_factory.mktemp("serve")
    path = folder / "colours.imgclf"
    clf.save(path)
    files = []
    for i, image in enumerate(colour_images(4, rng, (20, 24))[0]):
        name = folder / (f"img{i}.png" if i % 2 else f"img{i}.jpg")
        Image.fromarray(image).save(name)
        files.append(name)
    # At the network's size (nothing to convert), grey, and with transparency.
    same, _ = colour_images(1, rng)
    grey = Image.fromarray(same[0]).convert("L")
    rgba = Image.fromarray(colour_images(1, rng, (18, 18))[0][0]).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((18, 18)))
    for name, picture in [
        ("same.png", Image.fromarray(same[0])),
        ("grey.png", grey),
        ("alpha.png", rgba),
    ]:
        picture.save(folder / name)
        files.append(folder / name)
    return clf, path, files


@pytest.fixture(scope="module")
def client(model):
    with TestClient(create_app(imgclf.load(model[1]))) as c:
        yield c


def _send(client, items, **kwargs):
    files = [("files", (name, data, "application/octet-stream")) for name, data in items]
    return client.post("/predict", files=files, **kwargs)


def _items(paths):
    return [(p.name, p.read_bytes()) for p in paths]


def test_info_answers_the_model_card(client, model):
    answer = client.get("/info")
    assert answer.status_code == 200
    assert answer.json() == json.loads(json.dumps(imgclf.load(model[1]).card_))


def test_predict_answers_each_file_as_predict_does(client, model):
    clf, _, files = model
    answer = _send(client, _items(files))
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["name"] for r in results] == [f.name for f in files]
    paths = [str(f) for f in files]
    assert [r["label"] for r in results] == clf.predict(paths).tolist()
    proba = np.array([[r["probabilities"][c] for c in clf.classes_] for r in results])
    np.testing.assert_allclose(proba, clf.predict_proba(paths), atol=2e-4)
    assert "gradcam" not in results[0]


def test_corrupt_and_non_image_uploads_get_4xx_and_the_server_goes_on(client, model):
    good = model[2][0]
    png = model[2][1].read_bytes()
    items = [
        ("noise.jpg", os.urandom(3000)),
        (good.name, good.read_bytes()),
        ("notes.txt", b"just some text\n"),
        ("cut.png", png[: len(png) // 2]),
    ]
    answer = _send(client, items)
    assert answer.status_code == 422
    results = answer.json()["results"]
    assert results[0]["name"] == "noise.jpg" and "not an image" in results[0]["error"]
    assert results[1]["label"] == model[0].predict([str(good)])[0]
    assert "notes.txt: not an image" in results[2]["error"]
    assert "cut.png" in results[3]["error"] and "label" not in results[3]
    assert _send(client, _items(model[2][:1])).status_code == 200


@pytest.mark.parametrize(
    "how", ["no files", "other field", "not multipart", "broken form", "empty file"]
)
def test_malformed_requests_get_400(client, model, how):
    if how == "no files":
        answer = client.post("/predict", data={"x": "1"}, files={"other": ("a.png", b"x")})
    elif how == "other field":
        answer = client.post("/predict", files={"file": ("a.png", model[2][0].read_bytes())})
    elif how == "not multipart":
        answer = client.post("/predict", json={"files": ["a.png"]})
    elif how == "broken form":
        answer = client.post(
            "/predict",
            content=b'--xyz\r\nContent-Disposition: form-data; name="files"\r\n\r\ndata',
            headers={"content-type": "multipart/form-data; boundary=abc"},
        )
    else:
        answer = _send(client, [("empty.png", b"")])
    assert answer.status_code in (400, 422), answer.text
    assert ("error" in answer.json()) or answer.json()["results"][0]["error"]


def test_size_limits_give_413(model):
    clf = imgclf.load(model[1])
    data = model[2][0].read_bytes()
    with TestClient(create_app(clf, max_upload_bytes=len(data) - 1)) as small:
        answer = _send(small, [("big.jpg", data)])
        assert answer.status_code == 413 and "big.jpg: larger than" in answer.json()["error"]
    with TestClient(create_app(clf, max_request_bytes=2 * len(data))) as small:
        answer = _send(small, [("a.jpg", data)] * 3)
        assert answer.status_code == 413 and "request" in answer.json()["error"]

        def chunks():  # no content-length: counted as it arrives
            yield b'--b\r\nContent-Disposition: form-data; name="files"; filename="a"\r\n\r\n'
            for _ in range(4):
                yield data

        answer = small.post(
            "/predict",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert answer.status_code == 413
    with TestClient(create_app(clf, max_images=2)) as small:
        answer = _send(small, [("a.jpg", data)] * 3)
        assert answer.status_code == 413 and "more than 2" in answer.json()["error"]


def test_an_image_over_the_pixel_limit_is_refused(client, model, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    answer = _send(client, _items(model[2][:1]))
    assert answer.status_code == 413
    assert "pixels" in answer.json()["results"][0]["error"]


def _zip(members: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def test_a_zip_is_read_in_memory_and_its_images_answered(client, model, tmp_path, monkeypatch):
    clf, _, files = model
    monkeypatch.chdir(tmp_path)
    archive = _zip(
        {
            "set/": b"",
            "set/a.png": files[1].read_bytes(),
            "../escape.jpg": files[0].read_bytes(),
            "/abs/b.png": files[3].read_bytes(),
            "set/readme.txt": b"not an image",
            "__MACOSX/set/._a.png": b"junk",
        }
    )
    answer = _send(client, [("batch.zip", archive)])
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["name"] for r in results] == [
        "batch.zip/set/a.png",
        "batch.zip/../escape.jpg",
        "batch.zip//abs/b.png",
    ]
    expected = clf.predict([str(files[1]), str(files[0]), str(files[3])]).tolist()
    assert [r["label"] for r in results] == expected
    assert sorted(os.listdir(tmp_path)) == []  # nothing written where the names point
    assert not os.path.exists(tmp_path.parent / "escape.jpg")


def test_zip_limits_and_damage(model):
    clf = imgclf.load(model[1])
    bomb = _zip({"zeros.png": b"\0" * 5_000_000})  # inflates 1000 times
    with TestClient(create_app(clf, max_upload_bytes=1_000_000, max_images=3)) as small:
        answer = _send(small, [("bomb.zip", bomb)])
        assert answer.status_code == 413 and "inflate" in answer.json()["results"][0]["error"]
        many = _zip({f"{i}.png": model[2][1].read_bytes() for i in range(4)})
        answer = _send(small, [("many.zip", many)])
        assert answer.status_code == 413 and "more than 3" in answer.json()["results"][0]["error"]
        answer = _send(small, [("cut.zip", _zip({"a.png": b"x" * 100})[:60])])
        assert answer.status_code == 422 and "zip" in answer.json()["results"][0]["error"]
        answer = _send(small, [("text.zip", _zip({"a.txt": b"x"}))])
        assert (
            answer.status_code == 422 and "no image files" in answer.json()["results"][0]["error"]
        )


def test_gradcam_overlays_for_the_first_images(client, model):
    answer = client.post(
        "/predict?gradcam=2",
        files=[("files", (f.name, f.read_bytes())) for f in model[2][:3]],
    )
    results = answer.json()["results"]
    assert ["gradcam" in r for r in results] == [True, True, False]
    head, data = results[0]["gradcam"].split(",", 1)
    assert head == "data:image/png;base64"
    with Image.open(io.BytesIO(base64.b64decode(data))) as im:
        assert im.format == "PNG" and max(im.size) >= 192
    assert client.post("/predict?gradcam=x", files={"files": ("a", b"")}).status_code == 400


def test_the_page_embeds_the_card_and_escapes_it():
    card = {"estimator": "X", "classes": ["</script><script>alert(1)</script>"]}
    html = page(card, {"max_upload": 1, "max_request": 2, "max_images": 3, "gradcam": 0})
    assert "</script><script>alert(1)" not in html
    assert html.count("</script>") == 2  # the config's and the code's own
    config = html.split('<script id="config" type="application/json">')[1].split("</script>")[0]
    assert json.loads(config)["card"] == card


def test_the_page_is_served(client):
    answer = client.get("/")
    assert answer.status_code == 200 and 'id="drop"' in answer.text
    assert "CNNClassifier" in answer.text


def test_serve_refuses_models_that_do_not_load(model, tmp_path, capsys):
    assert main(["serve", str(tmp_path / "missing.imgclf")]) == 1
    assert "No saved model" in capsys.readouterr().err
    broken = tmp_path / "broken.imgclf"
    broken.write_bytes(model[1].read_bytes()[:5000])
    assert main(["serve", str(broken), "--port", "0"]) == 1
    assert "damaged" in capsys.readouterr().err
    import joblib

    pickled = tmp_path / "model.pkl"
    joblib.dump(model[0], pickled)
    assert main(["serve", str(pickled), "--port", "0"]) == 1
    assert "trusted" in capsys.readouterr().err


def test_serve_names_a_port_in_use(model, capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["serve", str(model[1]), "--port", str(port)]) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--max-upload-mb=0", "--max-images=-1", "--max-request-mb=x"])
def test_limits_must_be_positive(model, flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", str(model[1]), flag])
    assert exit_.value.code == 2 and "expected a number > 0" in capsys.readouterr().err


def test_only_loopback_hosts_are_private():
    from imgclf._serving import _is_loopback

    assert all(_is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    assert not any(_is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.2", "example"))
