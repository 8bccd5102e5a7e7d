"""A real browser (headless Chromium through selenium and the system's chromedriver) opens a report
written by ``mmgen train`` and the ``mmgen demo`` page: plots, images and audio players render, the
console has no errors, and a caption typed on the demo comes back as an image. .ci/run installs
Chromium (scripts/browser_deps.sh); where it is missing these tests are skipped, saying so."""
import io
import os
import shutil
import threading

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.plugins("image", "audio", "text")]

MISSING = ("needs Chromium and chromedriver (Debian/Ubuntu: apt-get install chromium chromium-driver; "
           "bash scripts/browser_deps.sh; .ci/run installs them)")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the test extra)")
    from selenium.webdriver.chrome.service import Service
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.skip(MISSING)
    options = webdriver.ChromeOptions()
    options.binary_location = binary  # with the driver's path: Selenium Manager has nothing to download
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1600", "--mute-audio"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    previous = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"
    try:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    finally:
        os.environ.pop("SE_OFFLINE") if previous is None else os.environ.update(SE_OFFLINE=previous)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(driver, script: str, what: str, timeout: float = 20):
    """Wait until ``script`` (a JS expression) is truthy; its value."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(f"return {script}"))
    except TimeoutException:
        raise AssertionError(f"the page never showed {what} within {timeout} s") from None


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def assert_not_blank(driver) -> None:
    """The screenshot has content: its grey levels vary (a blank page has one level) and over 2% of
    its pixels are not white."""
    from PIL import Image, ImageStat
    shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("L")
    not_white = sum(shot.histogram()[:250]) / (shot.size[0] * shot.size[1])
    assert ImageStat.Stat(shot).stddev[0] > 5 and not_white > 0.02, (ImageStat.Stat(shot).stddev, not_white)


def test_report_renders_plots_images_and_audio(browser, tiny_mfm_run):
    run, _ = tiny_mfm_run
    browser.get("file://" + os.path.abspath(os.path.join(run, "report.html")))
    wait_for(browser, "document.readyState === 'complete'", "a loaded page")
    charts = browser.execute_script(
        "return [...document.querySelectorAll('svg.chart')].map(s => s.getBoundingClientRect().width)")
    assert len(charts) >= 5 and min(charts) > 100
    widths = wait_for(browser, "[...document.images].every(i => i.complete) && [...document.images].map(i => i.naturalWidth)",
                      "decoded images")
    assert len(widths) >= 8 and min(widths) > 0
    durations = wait_for(browser, "[...document.querySelectorAll('audio')].every(a => a.readyState >= 1) && "
                                  "[...document.querySelectorAll('audio')].map(a => a.duration)", "audio metadata")
    assert len(durations) >= 8 and min(durations) > 0.5  # 4 clips of 0.5 s with 0.2 s gaps
    assert_not_blank(browser)
    assert console_errors(browser) == []


def test_demo_answers_a_typed_caption_with_an_image(browser, tiny_mfm_run):
    from mmgen.demo import Demo
    from mmgen.demo.server import make_server
    from selenium.webdriver.common.by import By
    server = make_server(Demo(tiny_mfm_run[0]))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host, port = server.server_address[:2]
        browser.get(f"http://{host}:{port}/")
        browser.find_element(By.ID, "input-text").send_keys("a handwritten seven")
        browser.find_element(By.CSS_SELECTOR, "#form-text button").click()
        width = wait_for(browser, "(i => i && i.complete && i.naturalWidth)(document.querySelector('#outputs img'))",
                         "an image in the outputs")
        assert width > 0
        assert "done in" in browser.find_element(By.ID, "status").text
        duration = wait_for(browser, "(a => a && a.readyState >= 1 && a.duration)(document.querySelector('#outputs audio'))",
                            "a playable audio output")
        assert duration > 0.5
        assert_not_blank(browser)
        # an uploaded image (read by the page's script, sent as base64) comes back as a caption and speech
        image = os.path.join(tiny_mfm_run[0], "samples", "step-000004-real-image.png")
        browser.find_element(By.ID, "input-image").send_keys(image)
        browser.find_element(By.CSS_SELECTOR, "#form-image button").click()
        caption = wait_for(browser, "(p => p && p.textContent)(document.querySelector('#outputs pre'))",
                           "a caption generated from the uploaded image")
        assert len(caption.splitlines()) == 8  # n = 8 draws
        assert console_errors(browser) == []
    finally:
        server.shutdown()
        server.server_close()
