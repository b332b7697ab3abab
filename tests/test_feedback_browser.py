"""End to end through the real page: headless Chromium (Debian's `chromium` + `chromium-driver`,
driven by selenium) labels one item of every task with the keyboard and the mouse, against a
server on 127.0.0.1. Checks what was stored, that model text is shown as text, and takes the
screenshot used in the README (written to docs/ when RLHFKIT_UPDATE_SCREENSHOT=1)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

if not (CHROMIUM and DRIVER):
    if os.environ.get("CI"):
        pytest.fail("Debian's chromium and chromium-driver are needed for the browser test (make setup installs them)",
                    pytrace=False)
    pytest.skip("chromium / chromedriver not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from rlhfkit.feedback.server import create_app  # noqa: E402
from rlhfkit.feedback.store import FeedbackStore, NewItem  # noqa: E402
from tests.test_feedback_http import running  # noqa: E402

XSS = 'Great film! <script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"> & "quotes"'
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "feedback-page.png"

ITEMS = [
    NewItem("pairwise", "Write a one-sentence review of a heist movie set in Lisbon.", (
        "A stylish, clever caper: the Lisbon rooftops are gorgeous and the final twist genuinely surprised me.",
        "The movie is a movie about a heist. It is set in Lisbon. There is a heist in the movie.")),
    NewItem("ranking", "Name a fruit that is red.", ("A strawberry.", "A banana.", "Cherries are red.")),
    NewItem("rating", "What is 7 + 5?", ("7 + 5 = 12.",)),
    NewItem("thumbs", "Say something kind.", ("No.",)),
    NewItem("rewrite", "Capital of Australia?", ("The capital of Australia is Sydney.",)),
    NewItem("demonstration", "Explain in one sentence why the sky is blue.", ()),
    NewItem("pairwise", "Describe the film in a few words.", (XSS, "It was fine.")),
]


@pytest.fixture()
def browser():
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,860", "--force-device-scale-factor=1", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _wait_for_item(driver, item_id: int):
    WebDriverWait(driver, 10).until(
        lambda d: d.find_element(By.ID, "task").is_displayed()
        and d.find_element(By.ID, "task").get_attribute("data-item-id") == str(item_id))


def _press(driver, *keys):
    from selenium.webdriver.common.action_chains import ActionChains

    chain = ActionChains(driver)
    for key in keys:
        chain.send_keys(key)
    chain.perform()


def _shown_indices(driver) -> list[int]:
    return [int(card.get_attribute("data-index")) for card in driver.find_elements(By.CSS_SELECTOR, "#candidates .response")]


def test_label_every_task_through_the_page(tmp_path, browser):
    store = FeedbackStore(tmp_path / "fb.sqlite")
    store.add_items(ITEMS)
    token = store.add_annotator("ada")
    with running(create_app(store, overlap=1)) as url:
        browser.get(f"{url}/#token={token}")
        # 1. pairwise, keyboard "1" = A better; the screenshot shows this first item
        _wait_for_item(browser, 1)
        assert "#token" not in browser.current_url  # the token leaves the address bar
        assert "ada" in browser.find_element(By.ID, "who").text
        assert "0 labelled · 7 left" in browser.find_element(By.ID, "progress-text").text
        shot = tmp_path / "feedback-page.png"
        browser.save_screenshot(str(shot))
        if os.environ.get("RLHFKIT_UPDATE_SCREENSHOT"):
            SCREENSHOT.parent.mkdir(exist_ok=True)
            shutil.copyfile(shot, SCREENSHOT)
        shown_a = _shown_indices(browser)[0]
        _press(browser, "1")

        # 2. ranking: press 2 then 1 (the third is implied), Enter submits
        _wait_for_item(browser, 2)
        shown = _shown_indices(browser)
        _press(browser, "2", "1")
        WebDriverWait(browser, 5).until(lambda d: "complete" in d.find_element(By.ID, "rank-hint").text)
        _press(browser, Keys.ENTER)

        # 3. rating: "7" pressed twice quickly stores one label; then Z undoes it and "6" replaces it
        _wait_for_item(browser, 3)
        _press(browser, "7", "7")
        _wait_for_item(browser, 4)
        _press(browser, "z")
        _wait_for_item(browser, 3)
        assert "Undone" in browser.find_element(By.ID, "status").text
        _press(browser, "6")

        # 4. thumbs: the mouse
        _wait_for_item(browser, 4)
        next(b for b in browser.find_elements(By.CSS_SELECTOR, "#controls button") if "Bad" in b.text).click()

        # 5. rewrite: the editor is focused and holds the response; Ctrl+Enter submits
        _wait_for_item(browser, 5)
        editor = browser.find_element(By.ID, "editor")
        assert editor.get_attribute("value") == "The capital of Australia is Sydney."
        editor.send_keys(Keys.CONTROL, "a")
        editor.send_keys("The capital of Australia is Canberra.")
        editor.send_keys(Keys.CONTROL, Keys.ENTER)

        # 6. demonstration: an empty submit is refused with a message, then a real one goes through
        _wait_for_item(browser, 6)
        editor = browser.find_element(By.ID, "editor")
        editor.send_keys(Keys.CONTROL, Keys.ENTER)
        WebDriverWait(browser, 5).until(lambda d: "Write something" in d.find_element(By.ID, "status").text)
        editor.send_keys("Air scatters blue light more than red light, so the sky looks blue.")
        editor.send_keys(Keys.CONTROL, Keys.ENTER)

        # 7. model text with markup is shown as text and runs nothing; "4" = both bad
        _wait_for_item(browser, 7)
        texts = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#candidates .response .text")]
        assert XSS in texts
        assert not browser.find_elements(By.CSS_SELECTOR, "#candidates img, #candidates script")
        assert browser.execute_script("return window.pwned === undefined")
        _press(browser, "4")

        WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "done").is_displayed())
        assert "7 labelled · 0 left" in browser.find_element(By.ID, "progress-text").text

    values = {e["item"].id: e["value"] for e in store.labels()}
    assert len(store.labels()) == 7  # one label per item: the double "7" was stored once, then undone
    assert values[1] == {"preferred": shown_a}
    assert values[2] == {"order": [shown[1], shown[0], shown[2]]}
    assert values[3] == {"rating": 6}
    assert values[4] == {"thumbs_up": False}
    assert values[5] == {"rewrite": "The capital of Australia is Canberra."}
    assert values[6] == {"completion": "Air scatters blue light more than red light, so the sky looks blue."}
    assert values[7] == {"preferred": "both_bad"}
    assert shot.stat().st_size > 10_000
    store.close()
