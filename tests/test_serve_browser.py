"""``imgclf serve`` in a real browser: headless Chromium (the Debian packages
``chromium`` and ``chromium-driver``) driven by Selenium against the command
started in a subprocess. Uploads images through the page and compares the top
class it shows with ``predict``, uploads a corrupt file and reads the message,
downloads the CSV of a zip's images, and saves screenshots under
``tests/artifacts/`` (printed)."""

import csv
import io
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip(
        "headless Chromium is not installed (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
pytest.importorskip("starlette", reason="the serve extra is not installed")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from imgclf import CNNClassifier  # noqa: E402

ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A model of 24x24 colour images saved to a file, and image files to upload."""
    rng = np.random.default_rng(1)
    n = 120
    y = np.arange(n) % 3
    X = rng.integers(0, 90, (n, 24, 24, 3), dtype=np.uint8)
    X[np.arange(n), :, :, y] += 150
    labels = np.array(["red", "green", "blue"])[y]
    clf = CNNClassifier(epochs=3, filters=4, validation_fraction=0.2, random_state=0).fit(X, labels)
    folder = tmp_path_factory.mktemp("browser")
    path = folder / "colours.imgclf"
    clf.save(path)
    files = []
    for i, channel in enumerate([0, 1, 2, 1]):
        image = rng.integers(0, 90, (40, 32, 3), dtype=np.uint8)
        image[..., channel] += 150
        name = folder / f"photo{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(image).save(name)
        files.append(name)
    return clf, path, files


@pytest.fixture(scope="module")
def server(model):
    """``imgclf serve MODEL --port 0`` in a subprocess; its URL."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    process = subprocess.Popen(
        [sys.executable, "-m", "imgclf", "serve", str(model[1]), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = process.stdout.readline()  # printed once it listens
        found = re.search(r"http://[\d.]+:\d+/", line)
        assert found, f"no URL from imgclf serve: {line!r} {process.stderr.read()[-2000:]}"
        yield found.group(0)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1400,1100")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    downloads = tmp_path_factory.mktemp("downloads")
    driver.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.downloads = downloads
    yield driver
    driver.quit()


def _upload(driver, paths):
    field = driver.find_element(By.ID, "files")
    field.send_keys("\n".join(str(p) for p in paths))


def _wait(driver, what, timeout=120):
    return WebDriverWait(driver, timeout).until(lambda d: what(d))


def _screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def test_the_page_shows_predict_s_top_class(model, server, browser):
    clf, _, files = model
    browser.get(server)
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#card dl"))
    assert "CNNClassifier" in browser.find_element(By.ID, "model-name").text
    card_text = browser.find_element(By.ID, "card").text
    assert "red" in card_text and "kept epoch" in card_text

    chosen = files[:3]
    _upload(browser, chosen)
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".result")) == 3)
    shown = {
        card.find_element(By.CSS_SELECTOR, ".name").text: card.find_element(
            By.CSS_SELECTOR, ".top-label"
        ).text
        for card in browser.find_elements(By.CSS_SELECTOR, ".result")
    }
    expected = clf.predict([str(p) for p in chosen])
    assert shown == {p.name: label for p, label in zip(chosen, expected, strict=True)}
    assert len(browser.find_elements(By.CSS_SELECTOR, ".result img.gradcam")) == 3
    assert len(browser.find_elements(By.CSS_SELECTOR, "#table tr")) == 1 + 3
    path = _screenshot(browser, "serve-page.png")
    assert path.stat().st_size > 10_000


def test_a_corrupt_upload_shows_a_message(model, server, browser, tmp_path):
    browser.get(server)
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#card dl"))
    noise = tmp_path / "noise.jpg"
    noise.write_bytes(os.urandom(4000))
    _upload(browser, [noise, model[2][3]])
    errors = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#errors .error"))
    assert "noise.jpg: not an image" in errors[0].text
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".result")) == 1)
    assert "could not be used" in browser.find_element(By.ID, "status").text
    _screenshot(browser, "serve-error.png")


def test_a_zip_fills_the_table_and_the_csv(model, server, browser, tmp_path):
    clf, _, files = model
    archive = tmp_path / "photos.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for f in files:
            zf.writestr(f"photos/{f.name}", f.read_bytes())
    archive.write_bytes(buffer.getvalue())
    browser.get(server)
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#card dl"))
    _upload(browser, [archive])
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#table tr")) == 1 + len(files))
    browser.find_element(By.ID, "csv").click()
    target = browser.downloads / "predictions.csv"
    deadline = time.monotonic() + 30
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    rows = list(csv.DictReader(target.read_text().splitlines()))
    assert [r["path"] for r in rows] == [f"photos.zip/photos/{f.name}" for f in files]
    assert [r["label"] for r in rows] == clf.predict([str(f) for f in files]).tolist()
    proba = clf.predict_proba([str(f) for f in files])
    got = np.array([[float(r[f"proba_{c}"]) for c in clf.classes_] for r in rows])
    np.testing.assert_allclose(got, proba, atol=1e-3)
