"""End to end through the real page: headless Chromium (Debian's `chromium` + `chromium-driver`,
driven by selenium; the `browser` fixture is in conftest.py) labels one item of every task with
the keyboard and the mouse, against a server on 127.0.0.1. Checks what was stored; that hostile
model text is shown as text and runs nothing; multi-step undo and "Saved ✓" beside the right
item; shortcuts after leaving a text box; long responses scrolling in their panels; guidelines
per import; the admin page's sign-in; and takes the screenshot used in the README (written to
docs/ when RLHFKIT_UPDATE_SCREENSHOT=1)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from rlhfkit.feedback.server import create_app  # noqa: E402
from rlhfkit.feedback.store import FeedbackStore, NewItem  # noqa: E402
from tests.conftest import console_errors  # noqa: E402
from tests.test_feedback_app import _cli  # noqa: E402
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


def _wait_for_item(driver, item_id: int):
    WebDriverWait(driver, 10).until(
        lambda d: d.find_element(By.ID, "task").is_displayed()
        and d.find_element(By.ID, "task").get_attribute("data-item-id") == str(item_id))


def _press(driver, *keys):
    chain = ActionChains(driver)
    for key in keys:
        chain.send_keys(key)
    chain.perform()


def _ctrl_enter(driver):
    """Ctrl+Enter to whatever has the focus (the page itself once the text box is left)."""
    ActionChains(driver).key_down(Keys.CONTROL).send_keys(Keys.ENTER).key_up(Keys.CONTROL).perform()


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
    store.close()


@contextlib.contextmanager
def serving(tmp_path, items, overlap=1, guidelines=None):
    """A store with `items` and the annotator "ada" (plus the admin "lead"), served on loopback;
    yields (store, ada's token, the lead's token, base URL)."""
    store = FeedbackStore(tmp_path / "fb.sqlite")
    if items:
        store.add_items(items, guidelines)
    token, admin = store.add_annotator("ada"), store.add_annotator("lead", admin=True)
    try:
        with running(create_app(store, overlap=overlap)) as url:
            yield store, token, admin, url
    finally:
        store.close()


def _catch_alerts(driver) -> None:
    """Record window.alert/confirm/prompt calls (before any page script runs) instead of opening
    a dialog, so that a test can read them back as window.__dialogs."""
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": (
        "window.__dialogs = [];"
        "for (const f of ['alert', 'confirm', 'prompt']) window[f] = (m) => { window.__dialogs.push([f, String(m)]); };")})


def _history(driver) -> list[tuple[int, str]]:
    return [(int(li.get_attribute("data-item-id")), li.text)
            for li in driver.find_elements(By.CSS_SELECTOR, "#history-list li")]


def _text_content(driver, selector: str) -> list[str]:
    return driver.execute_script(f"return [...document.querySelectorAll({selector!r})].map(e => e.textContent)")


LONG_LINE = "A" * 20_000
RLO = "harmless \u202egnp.exe\u202c text"
HOSTILE = [
    '<script>window.pwned = 1; alert("script")</script>',
    '<img src=x onerror="window.pwned = 2; alert(\'img\')">',
    '<a href="javascript:window.pwned = 3; alert(\'link\')">click me</a> or javascript:alert(4)',
    '<svg onload="window.pwned = 5; alert(5)"></svg><iframe src="javascript:alert(6)"></iframe>',
    "</div><style>body { display: none }</style>" + LONG_LINE,
    RLO,
]


def test_hostile_model_text_is_shown_literally_and_runs_nothing(tmp_path, browser):
    items = [NewItem("ranking", HOSTILE[0] + " " + HOSTILE[3], tuple(HOSTILE[:4])),
             NewItem("pairwise", RLO, (HOSTILE[4], HOSTILE[5]))]
    guidelines = "Be careful: " + HOSTILE[1] + "\n" + HOSTILE[2]
    with serving(tmp_path, items, guidelines=guidelines) as (store, token, _, url):
        _catch_alerts(browser)
        browser.get(f"{url}/#token={token}")
        _wait_for_item(browser, 1)
        assert _text_content(browser, "#prompt") == [HOSTILE[0] + " " + HOSTILE[3]]
        assert sorted(_text_content(browser, "#candidates .response .text")) == sorted(HOSTILE[:4])
        assert _text_content(browser, "#guidelines") == [guidelines]
        for card in browser.find_elements(By.CSS_SELECTOR, "#candidates .response .text"):
            card.click()  # clicking "javascript:" text follows nothing (and ranks the response)
        _press(browser, Keys.ENTER)
        _wait_for_item(browser, 2)
        assert _text_content(browser, "#prompt") == [RLO]
        assert sorted(_text_content(browser, "#candidates .response .text")) == sorted(HOSTILE[4:])
        # the right-to-left override stays inside its own panel; the 20 000-character line wraps
        styles = browser.execute_script(
            "return [...document.querySelectorAll('.text')].map(e => getComputedStyle(e).unicodeBidi)")
        assert set(styles) == {"plaintext"}
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        assert browser.find_element(By.TAG_NAME, "body").is_displayed()
        page = browser.find_element(By.ID, "task")
        assert not page.find_elements(By.CSS_SELECTOR, "script, img, a, svg, iframe, style")
        assert browser.execute_script("return window.pwned === undefined && window.__dialogs.length === 0")
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018 - a real dialog would be open here
        assert not console_errors(browser)  # no script error, no CSP violation, no failed load
        _press(browser, "1")
        WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "done").is_displayed())
        # the history repeats the prompt, as text too
        assert browser.execute_script("return window.pwned === undefined && window.__dialogs.length === 0")
        assert len(store.labels()) == 2


def test_multi_step_undo_and_saved_beside_the_right_item(tmp_path, browser):
    items = [NewItem("rating", f"Question {i}: what is {i} + {i}?", (f"{i} + {i} = {2 * i}.",)) for i in range(1, 5)]
    with serving(tmp_path, items) as (store, token, _, url):
        browser.get(f"{url}/#token={token}")
        for item_id, key in ((1, "3"), (2, "4"), (3, "5")):
            _wait_for_item(browser, item_id)
            _press(browser, key)
        _wait_for_item(browser, 4)
        WebDriverWait(browser, 5).until(lambda d: len(_history(d)) == 3)
        history = _history(browser)
        assert [item_id for item_id, _ in history] == [3, 2, 1]  # newest first
        for (item_id, text), rating in zip(history, (5, 4, 3)):
            assert text.startswith("Saved ✓") and f"Question {item_id}:" in text and f"rated {rating}" in text
        assert "Saved" not in browser.find_element(By.ID, "status").text  # not under item 4, which is not saved
        # Z, Z: the two newest answers are undone, newest first; each item comes back to be answered
        _press(browser, "z")
        _wait_for_item(browser, 3)
        assert "Undone" in browser.find_element(By.ID, "status").text
        assert [i for i, _ in _history(browser)] == [2, 1]
        _press(browser, "z")
        _wait_for_item(browser, 2)
        assert [i for i, _ in _history(browser)] == [1]
        _press(browser, "9")
        _wait_for_item(browser, 3)  # the other undone item is still held for ada
        _press(browser, "8")
        _wait_for_item(browser, 4)
        WebDriverWait(browser, 5).until(lambda d: [i for i, _ in _history(d)] == [3, 2, 1])
        assert "rated 8" in _history(browser)[0][1] and "rated 9" in _history(browser)[1][1]
        # an older answer's own undo button
        browser.find_elements(By.CSS_SELECTOR, "#history-list li button")[2].click()
        _wait_for_item(browser, 1)
        assert [i for i, _ in _history(browser)] == [3, 2]
        _press(browser, "7")
        _wait_for_item(browser, 4)
    values = {e["item"].id: e["value"]["rating"] for e in store.labels()}
    assert values == {1: 7, 2: 9, 3: 8}


def test_shortcuts_work_after_leaving_a_text_box(tmp_path, browser):
    items = [NewItem("rewrite", "Capital of Australia?", ("Sydney.",)),
             NewItem("demonstration", "Say hello.", ()),
             NewItem("thumbs", "Say something kind.", ("You are great.",))]
    with serving(tmp_path, items) as (store, token, _, url):
        browser.get(f"{url}/#token={token}")
        _wait_for_item(browser, 1)
        WebDriverWait(browser, 5).until(lambda d: d.switch_to.active_element.get_attribute("id") == "editor")
        _press(browser, "Canberra", Keys.ESCAPE)  # types into the box, then leaves it
        assert browser.switch_to.active_element.get_attribute("id") != "editor"
        _press(browser, "s")  # now a shortcut: skip
        _wait_for_item(browser, 2)
        WebDriverWait(browser, 5).until(lambda d: d.switch_to.active_element.get_attribute("id") == "editor")
        _press(browser, "Hello there!")
        browser.find_element(By.ID, "prompt").click()  # leaving the box with the mouse
        assert browser.switch_to.active_element.get_attribute("id") != "editor"
        _ctrl_enter(browser)  # still submits the text
        _wait_for_item(browser, 3)
        _press(browser, "z")  # undo, then the same item comes back with an empty box
        _wait_for_item(browser, 2)
        _press(browser, Keys.ESCAPE, "e", "Hi!", Keys.ESCAPE)  # E goes back into the box
        _ctrl_enter(browser)
        _wait_for_item(browser, 3)
        _press(browser, "u")
        WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "done").is_displayed())
    values = {e["item"].id: e["value"] for e in store.labels()}
    assert values == {2: {"completion": "Hi!"}, 3: {"thumbs_up": True}}
    store_skips = FeedbackStore(tmp_path / "fb.sqlite")
    assert store_skips.progress(store_skips.annotators()[0])["remaining"] == 0  # item 1 was skipped
    store_skips.close()


def test_long_responses_scroll_inside_their_panel_with_the_buttons_in_view(tmp_path, browser):
    long_a = "\n".join(f"Line {i} of a very long answer." for i in range(400))
    long_b = "\n".join(f"Another line {i}." for i in range(300))
    with serving(tmp_path, [NewItem("pairwise", "Tell me everything.", (long_a, long_b))]) as (store, token, _, url):
        browser.get(f"{url}/#token={token}")
        _wait_for_item(browser, 1)
        panels = browser.find_elements(By.CSS_SELECTOR, "#candidates .response .text")
        for panel in panels:
            assert browser.execute_script("return arguments[0].scrollHeight > arguments[0].clientHeight", panel)
        assert browser.execute_script("return window.scrollY") == 0
        for b in browser.find_elements(By.CSS_SELECTOR, "#controls button, #skip"):
            top, bottom = browser.execute_script(
                "const r = arguments[0].getBoundingClientRect(); return [r.top, r.bottom]", b)
            assert 0 <= top and bottom <= browser.execute_script("return window.innerHeight"), b.text
        # the panel scrolls by itself: its last line can be brought into view
        moved = browser.execute_script("const p = arguments[0]; p.scrollTop = p.scrollHeight; return p.scrollTop", panels[0])
        assert moved > 0 and browser.execute_script("return window.scrollY") == 0
        shown = _shown_indices(browser)
        _press(browser, "2")
        WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "done").is_displayed())
    assert store.labels()[0]["value"] == {"preferred": shown[1]}


def test_guidelines_given_at_import_are_shown_with_those_items(tmp_path, browser):
    db = tmp_path / "fb.sqlite"
    for name, prompt, text in (("a", "Review the film.", "Prefer the review that names a concrete detail."),
                               ("b", "Summarise the news.", "A summary must not add facts.\nShorter wins a tie.")):
        (tmp_path / f"{name}.jsonl").write_text(json.dumps({"prompt": prompt, "responses": ["One.", "Two."]}) + "\n")
        (tmp_path / f"{name}.txt").write_text(text + "\n")
        assert _cli(["feedback", "import", str(tmp_path / f"{name}.jsonl"), "--db", str(db),
                     "--guidelines", str(tmp_path / f"{name}.txt")]) == 0
    (tmp_path / "c.jsonl").write_text(json.dumps({"prompt": "No guidelines here.", "responses": ["X.", "Y."]}) + "\n")
    assert _cli(["feedback", "import", str(tmp_path / "c.jsonl"), "--db", str(db)]) == 0
    store = FeedbackStore(db)
    token = store.add_annotator("ada")
    with running(create_app(store, overlap=1)) as url:
        browser.get(f"{url}/#token={token}")
        _wait_for_item(browser, 1)
        box = browser.find_element(By.ID, "guidelines-box")
        assert box.is_displayed() and box.get_attribute("open") is not None
        assert _text_content(browser, "#guidelines") == ["Prefer the review that names a concrete detail."]
        _press(browser, "1")
        _wait_for_item(browser, 2)
        assert _text_content(browser, "#guidelines") == ["A summary must not add facts.\nShorter wins a tie."]
        browser.find_element(By.CSS_SELECTOR, "#guidelines-box summary").click()  # folds away
        assert browser.find_element(By.ID, "guidelines-box").get_attribute("open") is None
        _press(browser, "1")
        _wait_for_item(browser, 3)
        assert not browser.find_element(By.ID, "guidelines-box").is_displayed()
    store.close()


def test_admin_page_explains_how_to_sign_in(tmp_path, browser):
    with serving(tmp_path, [NewItem("rating", "p", ("r",))]) as (store, token, admin, url):
        browser.get(f"{url}/admin")
        signin = browser.find_element(By.ID, "signin")
        WebDriverWait(browser, 5).until(lambda d: signin.is_displayed())
        for words in ("add-annotator NAME --admin", "--rotate", "sign-in link", "--url"):
            assert words in signin.text, words
        assert not browser.find_element(By.ID, "summary").is_displayed()

        def sign_in(with_token):
            field = browser.find_element(By.ID, "admin-token")
            field.send_keys(with_token, Keys.ENTER)

        sign_in(token)  # an annotator's token: told why it is not enough
        WebDriverWait(browser, 5).until(lambda d: "needs an admin token" in d.find_element(By.ID, "admin-error").text)
        assert "ada" in browser.find_element(By.ID, "admin-error").text
        sign_in("not-a-token")
        WebDriverWait(browser, 5).until(lambda d: "not known" in d.find_element(By.ID, "admin-error").text)
        sign_in(admin)
        WebDriverWait(browser, 5).until(lambda d: d.find_element(By.ID, "summary").is_displayed())
        assert not signin.is_displayed()
        assert "lead (admin)" in browser.find_element(By.ID, "who").text
        names = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#people tbody td:first-child")]
        assert names == ["ada", "lead (admin)"]
        browser.find_element(By.ID, "logout").click()
        assert signin.is_displayed() and not browser.find_element(By.ID, "summary").is_displayed()
        # the sign-in link works with /admin in front of the #, and the token leaves the address bar
        browser.get(f"{url}/admin#token={admin}")
        WebDriverWait(browser, 5).until(lambda d: d.find_element(By.ID, "summary").is_displayed())
        assert "#token" not in browser.current_url


def test_screenshot_of_the_page(tmp_path, browser):
    items = [ITEMS[0], NewItem("pairwise", "Write a one-sentence review of a space opera set on Titan.", (
        "Gorgeous methane storms and a cast that sells every hushed line make this the year's best surprise.",
        "It is a film in space. Things happen on Titan. It is long."))]
    guidelines = ("Pick the review a film fan would find more useful. Specific details beat vague praise; "
                  "a review that only restates the prompt is the worse one. Use Tie when both are equally good.")
    with serving(tmp_path, items, guidelines=guidelines) as (store, token, _, url):
        browser.get(f"{url}/#token={token}")
        _wait_for_item(browser, 1)
        assert "0 labelled · 2 left" in browser.find_element(By.ID, "progress-text").text
        _press(browser, "1")
        _wait_for_item(browser, 2)
        WebDriverWait(browser, 5).until(lambda d: len(_history(d)) == 1)
        shot = tmp_path / "feedback-page.png"
        browser.save_screenshot(str(shot))
        if os.environ.get("RLHFKIT_UPDATE_SCREENSHOT"):
            SCREENSHOT.parent.mkdir(exist_ok=True)
            shutil.copyfile(shot, SCREENSHOT)
    assert shot.stat().st_size > 10_000
