"""report.html opened from disk in the real headless Chromium (Debian's `chromium` + `chromium-driver`,
driven by selenium): it renders, logs no console error, every plot image loads, model text runs
nothing. RLHFKIT_UPDATE_SCREENSHOT=1 writes the README's screenshot to docs/report.png, of the run
folder RLHFKIT_SCREENSHOT_RUN when set (e.g. runs/quickstart), else of the test's own run folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import console_errors

pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402

from rlhfkit.evaluation.report import build_report  # noqa: E402
from tests.test_report import XSS, make_quickstart_like_run  # noqa: E402

SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "report.png"


@pytest.fixture()
def browser(browser_factory):
    return browser_factory(1280, 1400)


def _check_page(browser, report: Path) -> None:
    browser.get(report.resolve().as_uri())
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("rlhfkit ")
    images = browser.execute_script("return [...document.images].map(i => [i.complete, i.naturalWidth, i.alt])")
    assert images and all(done and width > 0 for done, width, _ in images), images
    errors = console_errors(browser)
    assert not errors, errors


def test_report_renders_offline_with_every_plot(tmp_path, browser):
    report = build_report(make_quickstart_like_run(tmp_path / "qs"))
    _check_page(browser, report)
    cells = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "table.samples td")]
    assert any(XSS in c for c in cells)  # model text shown as text ...
    assert not browser.find_elements(By.CSS_SELECTOR, "table.samples img, table.samples script")
    assert browser.execute_script("return window.pwned === undefined")  # ... and it ran nothing
    headings = [h.text for h in browser.find_elements(By.TAG_NAME, "h2")]
    for wanted in ("Headline", "Win rates", "Training curves", "Samples", "Stage times", "Config"):
        assert wanted in headings
    shot = tmp_path / "report.png"
    if os.environ.get("RLHFKIT_UPDATE_SCREENSHOT"):
        real = os.environ.get("RLHFKIT_SCREENSHOT_RUN")
        if real:
            _check_page(browser, build_report(real))
        browser.save_screenshot(str(shot))
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
    else:
        browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
