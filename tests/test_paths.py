"""File paths as samples: decoding every format, bad files, the streamed
pipeline, caching, and fitting / predicting from paths."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from _images import gradient, png_bomb, write_bad_files, write_formats
from PIL import Image

from imgclf import CNNClassifier
from imgclf import _decode as decode
from imgclf import _pipeline as pipeline
from imgclf import _scan as scan
from imgclf._backend import get_tf
from imgclf._validation import Images
from imgclf.exceptions import ImageFileError

FAST = dict(epochs=2, batch_size=16, filters=4, random_state=0, validation_fraction=0.0)
FAST1 = dict(FAST, epochs=1)


def _decode(paths, channels, size, force_pillow=False):
    """Decode ``paths`` one by one with the pipeline's graph (eagerly)."""
    tf = get_tf()
    infos = scan.scan_files(paths)
    if force_pillow:
        infos = [f._replace(decoder=scan.PILLOW) for f in infos]
    per_image, per_batch, _ = decode.decode_fns(tf, infos, channels, size)

    def fn(path, kind):
        image = per_image(path, kind)
        return image if per_batch is None else per_batch(image[None])[0]

    return np.stack(
        [
            fn(tf.constant(p), tf.constant(f.decoder)).numpy()
            for p, f in zip(paths, infos, strict=True)
        ]
    )


def _iterate(paths, channels, size, y=None, **kwargs):
    kw = pipeline.make_dataset(
        Images(paths=np.array(paths, dtype=object)),
        y,
        size=size,
        channels=channels,
        batch_size=4,
        **kwargs,
    )
    return kw


# ----------------------------------------------------------------- decoding
@pytest.fixture(scope="module")
def formats(tmp_path_factory):
    folder = tmp_path_factory.mktemp("formats")
    return gradient(), write_formats(str(folder))


def test_scan_picks_tensorflow_for_plain_files_and_pillow_for_the_rest(formats):
    _, files = formats
    kinds = {name: scan.inspect_file(p).decoder for name, p in files.items()}
    tf_files = {"rgb.jpg", "progressive.jpg", "grey.jpg", "rgb.png", "grey.png", "rgba_opaque.png"}
    for name, kind in kinds.items():
        expected = (
            (scan.TF_JPEG if name.endswith(".jpg") else scan.TF_PNG)
            if name in tf_files
            else scan.PILLOW
        )
        assert kind == expected, name
    channels = {name: scan.inspect_file(p).channels for name, p in files.items()}
    assert {n for n, c in channels.items() if c == 1} == {
        "grey.jpg",
        "grey.png",
        "grey16.png",
        "grey_alpha.png",
    }


@pytest.mark.parametrize(
    "name", ["rgb.png", "rgba_opaque.png", "rgb.bmp", "rgb.tif", "lossless.webp"]
)
def test_lossless_formats_decode_to_the_original_pixels(formats, name):
    image, files = formats
    out = _decode([files[name]], 3, image.shape[:2])[0]
    np.testing.assert_allclose(out, image, atol=0.5)


@pytest.mark.parametrize("name", ["grey.png", "grey16.png", "grey_alpha.png"])
def test_grey_formats_agree_with_pillow_grey(formats, name):
    image, files = formats
    grey = np.asarray(Image.fromarray(image).convert("L"), np.float32)
    out = _decode([files[name]], 1, image.shape[:2])[0, ..., 0]
    np.testing.assert_allclose(out, grey, atol=0.5)


@pytest.mark.parametrize(
    "name", ["rgb.jpg", "progressive.jpg", "cmyk.jpg", "palette.png", "rgb.gif"]
)
def test_lossy_formats_stay_close_to_the_original(formats, name):
    image, files = formats
    out = _decode([files[name]], 3, image.shape[:2])[0]
    # JPEG at quality 95 and a 256-colour palette of a smooth image: a few levels.
    assert np.abs(out - image).mean() < 4, np.abs(out - image).mean()


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(
    "name", ["rgb.jpg", "progressive.jpg", "grey.jpg", "rgb.png", "grey.png", "rgba_opaque.png"]
)
def test_tensorflow_and_pillow_decoders_agree(formats, name, channels):
    """The same file through the fast TensorFlow graph and the Pillow fallback."""
    _, files = formats
    size = (9, 11)  # a resize too, so the shared tail of the pipeline is compared
    fast = _decode([files[name]], channels, size)
    slow = _decode([files[name]], channels, size, force_pillow=True)
    # libjpeg's integer DCT in both; colour conversion rounding can differ by 1.
    np.testing.assert_allclose(fast, slow, atol=1.01)


def test_plain_and_general_graphs_agree(formats, tmp_path):
    """A dataset of only plain RGB files takes a shorter graph; mixing in a grey
    file takes the general one. Both give the same pixels for the RGB files."""
    _, files = formats
    plain = _decode([files["rgb.jpg"], files["rgb.png"]], 3, (12, 16))
    mixed = _decode([files["rgb.jpg"], files["rgb.png"], files["grey.png"]], 3, (12, 16))
    np.testing.assert_allclose(plain, mixed[:2], atol=1e-4)


@pytest.mark.parametrize("sizes", [[(12, 16)] * 3, [(10, 10)] * 3, [(12, 16), (10, 10), (7, 9)]])
def test_batched_pipeline_gives_the_same_pixels_as_one_file_at_a_time(tmp_path, sizes):
    """Plain files of one size are decoded to uint8 and cast (and resized) per
    batch; mixed sizes are resized per image. Either way each image equals the
    general graph's, the one used for files that need conversion."""
    paths = []
    for i, (h, w) in enumerate(sizes):
        paths.append(str(tmp_path / f"{i}.{'jpg' if i % 2 else 'png'}"))
        Image.fromarray(gradient(h, w, seed=i)).save(paths[-1])
    kw = _iterate(paths, 3, (12, 16), y=np.arange(len(paths)))
    batches = [(images.numpy(), labels.numpy()) for images, labels in kw["x"]]
    images = np.concatenate([b[0] for b in batches])
    assert images.dtype == np.float32 and images.shape == (len(paths), 12, 16, 3)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), np.arange(len(paths)))
    general = _decode(paths, 3, (12, 16), force_pillow=True)
    np.testing.assert_allclose(images, general, atol=1.01)


def test_exif_orientation_is_applied(tmp_path):
    image = gradient(8, 16)  # wider than high
    path = str(tmp_path / "rotated.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    Image.fromarray(image).save(path, quality=95, exif=exif.tobytes())
    info = scan.inspect_file(path)
    assert info.decoder == scan.PILLOW and info.size == (8, 16)
    out = _decode([path], 3, (16, 8))[0]  # the upright image is 16 high, 8 wide
    upright = np.rot90(image, k=-1)
    assert np.abs(out - upright).mean() < 4


def test_alpha_is_flattened_onto_white_by_both_decoders(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = [10, 20, 30]
    rgba[0, :, 3] = 0  # transparent row: white
    rgba[1, :, 3] = 255  # opaque row: its colour
    rgba[2:, :, 3] = 128  # half: halfway to white
    png = str(tmp_path / "alpha.png")
    webp = str(tmp_path / "alpha.webp")
    Image.fromarray(rgba, "RGBA").save(png)
    Image.fromarray(rgba, "RGBA").save(webp, lossless=True, exact=True)
    assert scan.inspect_file(png).decoder == scan.TF_PNG
    assert scan.inspect_file(webp).decoder == scan.PILLOW
    out = _decode([png, webp], 3, (4, 4))
    np.testing.assert_allclose(out[:, 0], 255.0)
    np.testing.assert_allclose(out[:, 1], np.broadcast_to([10, 20, 30], (2, 4, 3)))
    half = np.array([10, 20, 30]) * 128 / 255 + 255 * (1 - 128 / 255)
    np.testing.assert_allclose(out[:, 2], np.broadcast_to(half, (2, 4, 3)), atol=1e-3)


def test_gif_uses_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (6, 6), c) for c in [(255, 0, 0), (0, 0, 255)]]
    path = str(tmp_path / "anim.gif")
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    out = _decode([path], 3, (6, 6))[0]
    np.testing.assert_allclose(out[0, 0], [255, 0, 0], atol=1)


# ---------------------------------------------------------------- bad files
@pytest.fixture
def bad_files(tmp_path):
    return write_bad_files(str(tmp_path / "bad"))


def test_scan_names_what_is_wrong_with_each_bad_file(bad_files, tmp_path):
    expected = {
        "empty": "empty (0 bytes)",
        "truncated": "truncated",
        "text": "not an image",
        "bomb": "decompression bomb",
    }
    for kind, path in bad_files.items():
        info = scan.inspect_file(path)
        assert info.problem is not None and expected[kind] in info.problem, (kind, info)
    assert "does not exist" in scan.inspect_file(str(tmp_path / "nope.jpg")).problem


def test_scan_gives_each_file_its_own_result_and_caches_it(bad_files, tmp_path):
    good = []
    for i in range(30):
        good.append(str(tmp_path / f"{i:02d}.{'jpg' if i % 2 else 'png'}"))
        Image.fromarray(gradient(8 + i, 9, seed=i)).save(good[-1])
    paths = good[:10] + list(bad_files.values()) + good[10:] + [str(tmp_path / "gone.jpg")]
    scan.clear_scan_cache()
    first = scan.scan_files(paths)
    assert first == [scan.inspect_file(p) for p in paths]
    assert [f.size[0] for f in first[:10]] == list(range(8, 18))
    assert [f.problem is not None for f in first].count(True) == len(bad_files) + 1
    # Cached; a file rewritten since (new size) is scanned again.
    Image.fromarray(gradient(40, 9)).save(good[0])
    again = scan.scan_files(paths)
    assert again[0].size == (40, 9) and again[1:] == first[1:]


def test_pixel_limit_follows_pillow_setting(tmp_path, monkeypatch):
    path = str(tmp_path / "big.png")
    Image.fromarray(gradient(20, 20)).save(path)
    assert scan.inspect_file(path).problem is None
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    assert "over the limit of 100" in scan.inspect_file(path).problem


def test_bomb_is_caught_by_pillow_fallback_too(tmp_path):
    # A header TensorFlow-free parsing cannot read goes to Pillow, which also refuses.
    path = png_bomb(str(tmp_path / "bomb.png"))
    found = scan._pillow_header(path, os.path.getsize(path))
    assert isinstance(found, scan.FileInfo) and "too large" in found.problem


def test_jpeg_with_bytes_after_the_end_marker_is_fine(tmp_path):
    path = str(tmp_path / "trailing.jpg")
    Image.fromarray(gradient()).save(path)
    with open(path, "ab") as f:
        f.write(b"\x00" * 100)  # some cameras pad files
    assert scan.inspect_file(path).problem is None


def _png_chunks(data: bytes):
    """``(offset, type)`` of each chunk of a PNG."""
    pos, out = 8, []
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        out.append((pos, data[pos + 4 : pos + 8]))
        pos += 12 + length
    return out


def test_png_tensorflow_refuses_is_decoded_by_pillow(tmp_path):
    # A bad CRC on the image data (the data itself intact): libpng refuses,
    # Pillow reads past it. So does a file cut just before its IEND chunk.
    image = gradient(8, 16)
    whole = str(tmp_path / "whole.png")
    Image.fromarray(image).save(whole)
    data = open(whole, "rb").read()
    (idat,) = [pos for pos, kind in _png_chunks(data) if kind == b"IDAT"]
    crc_at = idat + 8 + int.from_bytes(data[idat : idat + 4], "big")
    bad_crc = str(tmp_path / "bad_crc.png")
    with open(bad_crc, "wb") as f:
        f.write(data[:crc_at] + bytes([data[crc_at] ^ 0xFF]) + data[crc_at + 1 :])
    no_end = str(tmp_path / "no_end.png")
    with open(no_end, "wb") as f:
        f.write(data[:-12])
    assert scan.inspect_file(whole).decoder == scan.TF_PNG
    for path in (bad_crc, no_end):
        info = scan.inspect_file(path)
        assert info.problem is None and info.decoder == scan.PILLOW, (path, info)
        np.testing.assert_array_equal(_decode([path], 3, (8, 16))[0], image)


def test_file_no_decoder_reads_is_bad_and_names_both_reasons(tmp_path):
    path = str(tmp_path / "tables.jpg")
    Image.fromarray(gradient()).save(path)
    data = bytearray(open(path, "rb").read())
    dht = data.find(b"\xff\xc4")
    data[dht + 5 : dht + 21] = b"\xff" * 16  # code-length counts overflowing every length
    with open(path, "wb") as f:
        f.write(bytes(data))
    problem = scan.inspect_file(path).problem
    assert problem is not None and "Huffman" in problem and "Pillow:" in problem


def test_jpeg_declaring_more_pixels_than_its_data_can_hold_is_bad(tmp_path):
    # libjpeg would decode 81 million grey pixels from it, every epoch.
    path = str(tmp_path / "huge.jpg")
    Image.fromarray(gradient()).save(path)
    data = bytearray(open(path, "rb").read())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (9000).to_bytes(2, "big") * 2
    with open(path, "wb") as f:
        f.write(bytes(data))
    assert "too few for a JPEG of 9000 x 9000" in scan.inspect_file(path).problem


def test_each_file_is_checked_once(tmp_path, monkeypatch):
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"{i}.bmp"))
        Image.fromarray(gradient(seed=i)).save(paths[-1])
    calls = []
    real = decode.pillow_problem
    monkeypatch.setattr(decode, "pillow_problem", lambda p: calls.append(p) or real(p))
    scan.clear_scan_cache()
    scan.scan_files(paths)
    scan.scan_files(paths)
    assert sorted(calls) == sorted(paths)


def test_issue_13_minimal_case(tmp_path):
    """Two class folders of PNGs and the first 200 bytes of a 16x16 BMP."""
    from imgclf import load_folder

    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(6):
            Image.fromarray(gradient(16, 16, seed=i + (label == "b") * 10)).save(
                tmp_path / label / f"{i}.png"
            )
    whole = tmp_path / "whole.bmp"
    Image.fromarray(gradient(16, 16)).save(whole)
    cut = tmp_path / "a" / "cut.bmp"
    cut.write_bytes(whole.read_bytes()[:200])
    whole.unlink()
    with pytest.warns(UserWarning, match="cut.bmp"):
        X, y = load_folder(tmp_path)
    assert len(X) == 12 and str(cut) not in X
    everything = [*X, str(cut)]
    with pytest.warns(UserWarning, match="left out 1 of 13"):
        clf = CNNClassifier(**FAST1, image_size=8).fit(everything, [*y, "a"])
    with pytest.raises(ImageFileError, match="cut.bmp"):
        clf.predict([str(cut)])


@pytest.fixture(scope="module")
def stripes(tmp_path_factory):
    """40 small images of two easy classes (horizontal vs vertical stripes), in
    a folder with a space and non-ASCII letters, mixed sizes and formats."""
    folder = tmp_path_factory.mktemp("data") / "mes images é 写真"
    folder.mkdir()
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(40):
        label = i % 2
        side = (16, 20, 24)[i % 3]
        image = np.zeros((side, side), np.uint8)
        if label:
            image[:, ::4] = 255
        else:
            image[::4, :] = 255
        image = np.clip(image + rng.integers(0, 40, image.shape), 0, 255).astype(np.uint8)
        rgb = np.stack([image, image // 2, 255 - image], -1).astype(np.uint8)
        ext = ("png", "jpg", "webp", "bmp")[i % 4]
        path = str(folder / f"image {i} ü.{ext}")
        Image.fromarray(rgb).save(path, **({"quality": 95} if ext == "jpg" else {}))
        paths.append(path)
        labels.append(["horizontal", "vertical"][label])
    return paths, np.array(labels)


def test_fit_skips_bad_files_with_a_warning_naming_each(stripes, bad_files):
    paths, y = stripes
    X = list(paths[:16]) + list(bad_files.values())
    labels = list(y[:16]) + ["horizontal"] * len(bad_files)
    with pytest.warns(UserWarning, match="left out 4 of 20") as record:
        clf = CNNClassifier(**FAST, image_size=16).fit(X, labels)
    message = str(record[0].message)
    for path in bad_files.values():
        assert repr(path) in message
    assert clf.predict(paths[16:20]).shape == (4,)


def test_fit_with_on_bad_file_error_names_every_file(stripes, bad_files):
    paths, y = stripes
    X = list(paths[:8]) + list(bad_files.values())
    with pytest.raises(ImageFileError) as err:
        CNNClassifier(**FAST, on_bad_file="error").fit(X, list(y[:8]) + ["vertical"] * 4)
    for path in bad_files.values():
        assert repr(path) in str(err.value)
    assert "on_bad_file='skip'" in str(err.value)


def test_predict_on_a_bad_file_raises_naming_it(fitted_on_paths, bad_files):
    clf, paths, _ = fitted_on_paths
    with pytest.raises(ImageFileError, match="truncated.jpg"):
        clf.predict([paths[0], bad_files["truncated"]])


def test_file_broken_during_fit_raises_naming_it(stripes, tmp_path):
    import shutil

    from imgclf._backend import get_keras

    paths, y = stripes
    copies = [shutil.copy(p, tmp_path / os.path.basename(p)) for p in paths[:16]]
    victim = copies[5]

    class Break(get_keras().callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            with open(victim, "r+b") as f:
                f.truncate(40)

    clf = CNNClassifier(**FAST, image_size=16, callbacks=[Break()])
    with pytest.raises(ImageFileError, match="changed on disk") as err:
        clf.fit([str(p) for p in copies], y[:16])
    assert repr(str(victim)) in str(err.value) and "fit" in str(err.value)


def test_file_broken_behind_the_scan_cache_raises_naming_it(fitted_on_paths, tmp_path):
    import shutil

    clf, paths, _ = fitted_on_paths
    victim = str(shutil.copy(paths[0], tmp_path / "victim.png"))
    assert clf.predict([victim]).shape == (1,)
    # Same size and modification time: the cached scan still vouches for it.
    stat = os.stat(victim)
    with open(victim, "r+b") as f:
        f.seek(60)
        f.write(b"\x00" * (stat.st_size - 80))
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(ImageFileError, match="victim.png"):
        clf.predict([paths[1], victim])
    # Forgotten by the cache: the next call refuses it before predicting.
    with pytest.raises(ImageFileError, match="cannot be used"):
        clf.predict([victim])


# --------------------------------------------------------- fitting on paths
@pytest.fixture(scope="module")
def fitted_on_paths(stripes):
    paths, y = stripes
    clf = CNNClassifier(epochs=12, batch_size=8, filters=8, image_size=16, random_state=0)
    return clf.fit(paths[:32], y[:32]), paths, y  # the last 8 files are never seen


def test_learns_from_paths_with_unicode_spaces_and_mixed_sizes(fitted_on_paths):
    clf, paths, y = fitted_on_paths
    assert clf.n_channels_ == 3 and clf.image_size_ == (16, 16)
    assert clf.input_range_ == (0.0, 255.0)
    assert clf.score(paths[32:], y[32:]) >= 7 / 8


@pytest.mark.parametrize("container", ["list", "ndarray", "series"])
def test_predict_accepts_list_array_and_series(fitted_on_paths, container):
    clf, paths, _ = fitted_on_paths
    X = {
        "list": lambda p: list(p),
        "ndarray": lambda p: np.array(p),
        "series": lambda p: pytest.importorskip("pandas").Series(p),
    }[container](paths[:6])
    proba = clf.predict_proba(X)
    expected = clf.predict_proba(list(paths[:6]))
    np.testing.assert_allclose(proba, expected, atol=1e-6)


def test_paths_and_arrays_give_the_same_predictions(fitted_on_paths, tmp_path):
    """PNG is lossless, so the file and the array are the same image."""
    clf, _, _ = fitted_on_paths
    images = np.stack([gradient(16, 16, seed=s) for s in range(4)])
    paths = []
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).save(paths[-1])
    np.testing.assert_allclose(clf.predict_proba(paths), clf.predict_proba(images), atol=1e-5)


@pytest.mark.slow
def test_color_mode_auto_follows_the_files(tmp_path):
    paths = []
    for i in range(8):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(gradient(8, 8, seed=i)).convert("L").save(paths[-1])
    y = [0, 1] * 4
    assert CNNClassifier(**FAST1).fit(paths, y).n_channels_ == 1
    assert CNNClassifier(**FAST1, color_mode="rgb").fit(paths, y).n_channels_ == 3
    Image.fromarray(gradient(8, 8)).save(paths[0])  # one colour file
    scan.clear_scan_cache()
    assert CNNClassifier(**FAST1).fit(paths, y).n_channels_ == 3


# ------------------------------------------------------------------ caching
def test_streamed_epochs_cover_every_file_once_in_a_seeded_order(stripes):
    paths, _ = stripes
    y = np.arange(len(paths))  # the label is the index: read it back
    runs = []
    for _ in range(2):
        kw = _iterate(paths, 3, (8, 8), y=y, shuffle=True, seed=3)
        runs.append(np.concatenate([labels.numpy() for _, labels in kw["x"]]))
    assert sorted(runs[0]) == list(range(len(paths)))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], np.arange(len(paths)))


@pytest.mark.parametrize("cache", ["memory", "folder"])
def test_cache_gives_the_same_pixels_as_streaming(stripes, tmp_path, cache):
    paths, _ = stripes
    paths = paths[:8]
    y = np.arange(8)
    streamed = np.concatenate([b.numpy() for b, _ in _iterate(paths, 3, (12, 12), y=y)["x"]])
    cache = "memory" if cache == "memory" else str(tmp_path / "cache")
    kw = _iterate(paths, 3, (12, 12), y=y, cache=cache)
    if cache == "memory":
        assert kw["x"].dtype == np.uint8
        cached, order = kw["x"].astype(np.float32), kw["y"]
    else:
        batches = list(kw["x"])
        cached = np.concatenate([b.numpy() for b, _ in batches])
        order = np.concatenate([labels.numpy() for _, labels in batches])
    # The cache stores whole pixel values: rounding is the only difference.
    np.testing.assert_allclose(cached, streamed[order], atol=0.5 + 1e-4)


@pytest.mark.slow
def test_file_cache_is_written_once_and_reused(stripes, tmp_path):
    paths, y = stripes
    folder = tmp_path / "cache"
    clf = CNNClassifier(**FAST1, image_size=8, cache=str(folder))
    first = clf.fit(paths, y).predict_proba(paths)
    files = sorted(folder.glob("*.npy"))
    assert len(files) == 1  # validation_fraction=0: one training set
    stamp = files[0].stat().st_mtime_ns
    second = CNNClassifier(**FAST1, image_size=8, cache=str(folder))
    np.testing.assert_allclose(second.fit(paths, y).predict_proba(paths), first, atol=1e-5)
    assert files[0].stat().st_mtime_ns == stamp
    assert not list(folder.glob("*.partial"))


def test_changed_file_gets_a_new_cache_entry(stripes, tmp_path):
    paths, _ = stripes
    folder = str(tmp_path / "cache")
    name1 = pipeline._cache_file(folder, paths[:4], (8, 8), 3)
    assert pipeline._cache_file(folder, paths[:4], (8, 8), 1) != name1
    os.utime(paths[0], ns=(0, 0))
    assert pipeline._cache_file(folder, paths[:4], (8, 8), 3) != name1


@pytest.mark.slow
def test_cross_validation_on_paths(stripes):
    from sklearn.model_selection import cross_val_score

    paths, y = stripes
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no bad files here: no warning
        est = CNNClassifier(**FAST1, image_size=8)
        scores = cross_val_score(est, np.array(paths), y, cv=2)
    # Each fold's score is that fold's model on the other fold's files.
    from sklearn.model_selection import StratifiedKFold

    train, test = next(StratifiedKFold(2).split(paths, y))
    fold = CNNClassifier(**FAST1, image_size=8).fit(np.array(paths)[train], y[train])
    assert scores[0] == pytest.approx(fold.score(np.array(paths)[test], y[test]))
