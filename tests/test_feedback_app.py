"""The human-feedback app: store, JSON API, import/export, agreement, concurrency, CLI."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from rlhfkit.data.loaders import load_records  # noqa: E402
from rlhfkit.feedback.importing import read_items  # noqa: E402
from rlhfkit.feedback.server import create_app  # noqa: E402
from rlhfkit.feedback.store import Conflict, FeedbackStore, NewItem  # noqa: E402

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture()
def store(tmp_path):
    s = FeedbackStore(tmp_path / "fb.sqlite")
    yield s
    s.close()


@pytest.fixture()
def tokens(store):
    return {"alice": store.add_annotator("alice"), "bob": store.add_annotator("bob"),
            "root": store.add_annotator("root", admin=True)}


@pytest.fixture()
def client(store, tokens):
    store.add_items([NewItem("pairwise", "Say hi", ("hello!", XSS)),
                     NewItem("rating", "Say bye", ("goodbye",)),
                     NewItem("ranking", "Count", ("one", "two", "three"))])
    return TestClient(create_app(store, overlap=2))


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def label(client, token, item_id, value, submission_id="s1", seconds=1.5):
    return client.post(f"/api/items/{item_id}/labels", headers=auth(token),
                       json={"submission_id": submission_id, "value": value, "seconds": seconds})


def test_label_endpoints_need_a_valid_token(client, tokens):
    assert client.get("/api/next").status_code == 401
    assert client.get("/api/next", headers=auth("nope")).status_code == 401
    assert label(client, "nope", 1, {"preferred": 0}).status_code == 401
    assert client.post("/api/items/1/skip").status_code == 401
    # admin endpoints refuse ordinary annotators
    assert client.get("/api/stats", headers=auth(tokens["alice"])).status_code == 403
    assert client.post("/api/items", headers=auth(tokens["alice"]), json={"items": []}).status_code == 403
    assert client.get("/api/export", headers=auth(tokens["alice"])).status_code == 403
    assert client.get("/api/stats", headers=auth(tokens["root"])).status_code == 200


def test_openapi_describes_the_api(client):
    spec = client.get("/openapi.json").json()
    for path in ("/api/next", "/api/items/{item_id}/labels", "/api/items", "/api/export", "/api/stats"):
        assert path in spec["paths"]
    schemes = spec["components"]["securitySchemes"]
    assert any(s.get("scheme") == "bearer" for s in schemes.values())
    assert "PairwiseValue" in spec["components"]["schemas"]


def test_page_is_served_with_a_strict_content_security_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/admin").status_code == 200


def test_queue_labels_and_progress(client, tokens):
    seen = []
    for _ in range(3):
        nxt = client.get("/api/next", headers=auth(tokens["alice"])).json()
        item = nxt["item"]
        assert item is not None
        seen.append(item["task"])
        value = {"pairwise": {"preferred": 0}, "rating": {"rating": 8}, "ranking": {"order": [2, 0, 1]}}[item["task"]]
        reply = label(client, tokens["alice"], item["id"], value, submission_id=f"a{item['id']}")
        assert reply.status_code == 200, reply.text
        assert reply.json()["duplicate"] is False
    assert sorted(seen) == ["pairwise", "ranking", "rating"]
    done = client.get("/api/next", headers=auth(tokens["alice"])).json()
    assert done["item"] is None
    assert done["progress"] == {"annotator": "alice", "labelled": 3, "remaining": 0, "total_items": 3,
                                "complete_items": 0, "overlap": 2}
    # bob still has all three (overlap 2), and items alice labelled come first
    progress = client.get("/api/progress", headers=auth(tokens["bob"])).json()
    assert progress["remaining"] == 3


def test_reload_shows_the_same_item_and_model_text_comes_back_verbatim(client, tokens):
    first = client.get("/api/next", headers=auth(tokens["alice"])).json()["item"]
    again = client.get("/api/next", headers=auth(tokens["alice"])).json()["item"]
    assert first == again  # the lease keeps the item; the shuffled order is stable
    pairwise = client.get("/api/items/1", headers=auth(tokens["alice"])).json()
    assert XSS in [r["text"] for r in pairwise["responses"]]  # JSON, never HTML: the page uses textContent


def test_double_submit_is_idempotent_and_a_changed_answer_conflicts(client, tokens, store):
    a = tokens["alice"]
    first = label(client, a, 1, {"preferred": 1}, submission_id="x")
    again = label(client, a, 1, {"preferred": 1}, submission_id="x")
    assert first.status_code == again.status_code == 200
    assert again.json()["duplicate"] is True and again.json()["label_id"] == first.json()["label_id"]
    # the same answer under a new submission id (e.g. a script re-run) is also a no-op
    assert label(client, a, 1, {"preferred": 1}, submission_id="y").json()["duplicate"] is True
    changed = label(client, a, 1, {"preferred": "tie"}, submission_id="z")
    assert changed.status_code == 409
    # a submission id belongs to one item
    assert label(client, a, 2, {"rating": 3}, submission_id="x").status_code == 409
    assert len(store.labels()) == 1


def test_undo_deletes_my_label_and_gives_the_item_back(client, tokens, store):
    a, b = tokens["alice"], tokens["bob"]
    label_id = label(client, a, 2, {"rating": 3}).json()["label_id"]
    assert client.delete(f"/api/labels/{label_id}", headers=auth(b)).status_code == 404  # not bob's
    back = client.delete(f"/api/labels/{label_id}", headers=auth(a)).json()
    assert back["item"]["id"] == 2 and back["progress"]["labelled"] == 0
    assert store.labels() == []
    assert label(client, a, 2, {"rating": 9}, submission_id="again").json()["duplicate"] is False
    assert client.delete(f"/api/labels/{label_id}", headers=auth(a)).status_code == 404  # already undone


def test_bad_answers_are_refused(client, tokens):
    a = tokens["alice"]
    assert label(client, a, 1, {"rating": 5}).status_code == 422  # wrong task
    assert label(client, a, 2, {"rating": 11}).status_code == 422
    assert label(client, a, 3, {"order": [0, 1]}).status_code == 422
    assert label(client, a, 1, {"preferred": 2}).status_code == 422
    assert label(client, a, 99, {"preferred": 0}).status_code == 404
    assert client.post("/api/items/1/labels", headers=auth(a), json={"value": {"preferred": 0}}).status_code == 422


def test_skip_takes_an_item_out_of_my_queue(client, tokens):
    a = tokens["alice"]
    item = client.get("/api/next", headers=auth(a)).json()["item"]
    assert client.post(f"/api/items/{item['id']}/skip", headers=auth(a)).json()["remaining"] == 2
    assert client.get("/api/next", headers=auth(a)).json()["item"]["id"] != item["id"]


def test_overlap_spreads_items_over_annotators(store, tokens):
    store.add_items([NewItem("thumbs", f"p{i}", (f"r{i}",)) for i in range(3)])
    alice, bob, root = (store.annotator_for_token(tokens[n]) for n in ("alice", "bob", "root"))
    # overlap 1: alice holds item 1, so bob is offered item 2 first
    assert store.next_item(alice, overlap=1).id == 1
    assert store.next_item(bob, overlap=1).id == 2
    store.submit(alice, 1, "s", {"thumbs_up": True})
    # item 1 is complete for overlap 1: root gets item 3 (2 is held by bob)
    assert store.next_item(root, overlap=1).id == 3
    # with overlap 2 items already labelled once come first
    assert store.next_item(root, overlap=2).id == 3  # root's own lease first
    store.skip(root, 3)
    assert store.next_item(root, overlap=2).id == 1


def test_import_export_round_trip(tmp_path, store, tokens):
    gen = tmp_path / "gen.jsonl"  # what `rlhfkit generate --n 2` writes
    gen.write_text("".join(json.dumps({"prompt": p, "response": r, "tokens": 3}) + "\n"
                           for p, r in [("p1", "a"), ("p1", "b"), ("p2", "c"), ("p2", "d")]))
    items = read_items(gen).items
    assert [(i.task, i.responses) for i in items] == [("pairwise", ("a", "b")), ("pairwise", ("c", "d"))]
    assert store.add_items(items) == (2, 0)
    assert store.add_items(items) == (0, 2)  # re-import adds nothing
    alice, bob = (store.annotator_for_token(tokens[n]) for n in ("alice", "bob"))
    store.submit(alice, 1, "1", {"preferred": 0})
    store.submit(bob, 1, "2", {"preferred": "tie"})
    store.submit(alice, 2, "3", {"preferred": "both_bad"})
    rows, report = store.export("pairwise", "each")
    assert report == {"labels": 3, "rows": 2, "left_out": 1}
    out = tmp_path / "prefs.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = load_records(out, "pairwise").records
    assert [(r.chosen, r.label) for r in records] == [("a", 1.0), ("a", 0.5)]
    mean, _ = store.export("pairwise", "mean")
    assert [(r["chosen"], r["label"]) for r in mean] == [("a", 0.75)]  # (1 + 0.5) / 2


def test_export_of_every_kind_validates(tmp_path, store, tokens):
    store.add_items([NewItem("ranking", "p", ("x", "y", "z")), NewItem("rating", "p", ("x",)),
                     NewItem("thumbs", "p", ("x",)), NewItem("rewrite", "p", ("x",)),
                     NewItem("demonstration", "p", ())])
    alice = store.annotator_for_token(tokens["alice"])
    values = [{"order": [1, 2, 0]}, {"rating": 4}, {"thumbs_up": False}, {"rewrite": "x, fixed"},
              {"completion": "an answer"}]
    for item_id, value in enumerate(values, start=1):
        store.submit(alice, item_id, str(item_id), value)
    for kind, check in [("ranking", lambda r: r.responses == ("y", "z", "x")), ("rating", lambda r: r.rating == 4),
                        ("thumbs", lambda r: r.thumbs_up is False), ("rewrite", lambda r: r.rewrite == "x, fixed"),
                        ("sft", lambda r: r.completion == "an answer")]:
        rows, _ = store.export(kind)
        path = tmp_path / f"{kind}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        (record,) = load_records(path, kind).records
        assert check(record), kind


def test_stats_report_agreement(store, tokens):
    store.add_items([NewItem("pairwise", f"p{i}", ("a", "b")) for i in range(3)])
    alice, bob = (store.annotator_for_token(tokens[n]) for n in ("alice", "bob"))
    # alice / bob: (0, 0), (1, 0), (1, 1) -> the hand-worked table of test_feedback_math: α = 4/9
    for item_id, (x, y) in enumerate([(0, 0), (1, 0), (1, 1)], start=1):
        store.submit(alice, item_id, f"a{item_id}", {"preferred": x})
        store.submit(bob, item_id, f"b{item_id}", {"preferred": y})
    (task,) = store.stats(overlap=2)["tasks"]
    assert task["items_with_overlap"] == 3
    assert task["krippendorff_alpha"] == pytest.approx(4 / 9)
    assert task["percent_agreement"] == pytest.approx(2 / 3)


def test_api_import_and_export(client, tokens):
    root = auth(tokens["root"])
    reply = client.post("/api/items", headers=root, json={"items": [
        {"prompt": "q", "responses": ["r1", "r2"]}, {"prompt": "w", "responses": ["only"], "task": "thumbs"}]})
    assert reply.json() == {"added": 2, "already_present": 0}
    bad = client.post("/api/items", headers=root, json={"items": [{"prompt": "q", "responses": ["a"] * 12}]})
    assert bad.status_code == 400 and "ranking item needs 3 to 9 responses" in bad.json()["detail"]
    label(client, tokens["alice"], 1, {"preferred": 0})
    exported = client.get("/api/export?kind=pairwise", headers=root).json()
    assert exported["rows"][0]["chosen"] == "hello!"


def test_concurrent_submissions_lose_and_duplicate_nothing(tmp_path):
    """6 annotators x 20 items, every answer sent twice, from 16 threads at once through a real
    server: exactly 6 x 20 labels afterwards."""
    from tests.test_feedback_http import running

    store = FeedbackStore(tmp_path / "busy.sqlite")
    store.add_items([NewItem("rating", f"p{i}", (f"r{i}",)) for i in range(20)])
    names = [f"ann{i}" for i in range(6)]
    tokens = {n: store.add_annotator(n) for n in names}
    import httpx

    with running(create_app(store, overlap=6)) as url:
        def work(job):
            name, item_id = job
            with httpx.Client(base_url=url, timeout=30) as http:
                body = {"submission_id": f"{name}-{item_id}", "value": {"rating": 1 + item_id % 10}}
                codes = [http.post(f"/api/items/{item_id}/labels", json=body, headers=auth(tokens[name])).status_code
                         for _ in range(2)]
            return codes

        jobs = [(n, i) for n in names for i in range(1, 21)]
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(work, jobs))
    assert all(codes == [200, 200] for codes in results)
    entries = store.labels()
    assert len(entries) == 6 * 20
    assert len({(e["item"].id, e["annotator"]) for e in entries}) == 6 * 20


def test_store_submit_race_keeps_one_label(store, tokens):
    """Two threads submit different answers for the same (item, annotator) at once: one wins,
    the other gets Conflict; never two rows."""
    store.add_items([NewItem("thumbs", "p", ("r",))])
    alice = store.annotator_for_token(tokens["alice"])
    barrier = threading.Barrier(2)
    outcomes = []

    def go(up):
        barrier.wait()
        try:
            store.submit(alice, 1, f"s{up}", {"thumbs_up": up})
            outcomes.append("ok")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=go, args=(v,)) for v in (True, False)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "ok"]
    assert len(store.labels()) == 1


# --------------------------------------------------------------------------------------------
# CLI


def _cli(argv):
    from tests.test_feedback_labeler import _cli as run

    return run(argv)


def test_feedback_cli_session(tmp_path, capsys):
    db = str(tmp_path / "fb.sqlite")
    src = tmp_path / "items.jsonl"
    src.write_text(json.dumps({"prompt": "p", "responses": ["a", "b"]}) + "\n"
                   + json.dumps({"prompt": "q", "chosen": "c", "rejected": "d"}) + "\n")
    assert _cli(["feedback", "import", str(src), "--db", db]) == 0
    assert "2 new" in capsys.readouterr().out
    assert _cli(["feedback", "add-annotator", "alice", "--db", db]) == 0
    out = capsys.readouterr().out
    token = out.split("alice: ")[1].split()[0]
    assert f"#token={token}" in out
    store = FeedbackStore(db)
    store.submit(store.annotator_for_token(token), 2, "s", {"preferred": 1})
    export = tmp_path / "out.jsonl"
    assert _cli(["feedback", "export", "--db", db, "--kind", "pairwise", "--output", str(export)]) == 0
    (record,) = load_records(export, "pairwise").records
    assert (record.chosen, record.rejected) == ("d", "c")
    assert _cli(["feedback", "stats", "--db", db]) == 0
    assert "alice" in capsys.readouterr().out


def test_feedback_cli_user_errors(tmp_path):
    from rlhfkit.config import ConfigError
    from rlhfkit.data.schemas import DataError

    db = str(tmp_path / "fb.sqlite")
    with pytest.raises(DataError, match="no such feedback database"):
        _cli(["feedback", "export", "--db", db])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "responses": ["a", "b"]}\n{"prompt": "p", "responses": "oops"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl: row 2: field 'responses'"):
        _cli(["feedback", "import", str(bad), "--db", db])
    assert _cli(["feedback", "import", str(bad), "--db", db, "--skip-invalid"]) == 0
    assert _cli(["feedback", "add-annotator", "alice", "--db", db]) == 0
    with pytest.raises(ConfigError, match="already exists"):
        _cli(["feedback", "add-annotator", "alice", "--db", db])
    with pytest.raises(DataError, match="no pairwise rows.*none of the 1 pairwise items is labelled yet.*feedback serve"):
        _cli(["feedback", "export", "--db", db])
    with pytest.raises(DataError, match="no rating rows.*no rating items to label.*feedback import"):
        _cli(["feedback", "export", "--db", db, "--kind", "rating"])
    with pytest.raises(ConfigError, match="cannot be averaged"):
        _cli(["feedback", "export", "--db", db, "--kind", "sft", "--aggregate", "mean"])


def test_guidelines_per_import_reach_the_api_and_older_databases_are_migrated(tmp_path, capsys):
    import sqlite3

    from rlhfkit.config import ConfigError

    db = tmp_path / "old.sqlite"
    # a database as rlhfkit wrote it before guidelines existed (no guidelines_id column)
    old = sqlite3.connect(db)
    old.executescript("""
        CREATE TABLE items (id INTEGER PRIMARY KEY, task TEXT NOT NULL, prompt TEXT NOT NULL,
            responses TEXT NOT NULL, meta TEXT NOT NULL DEFAULT '{}', dedup_key TEXT NOT NULL UNIQUE,
            created REAL NOT NULL);
        INSERT INTO items (task, prompt, responses, dedup_key, created) VALUES ('rating', 'old', '["r"]', 'k', 0);""")
    old.close()
    store = FeedbackStore(db)
    assert store.get_item(1).guidelines == ""
    store.close()

    rows = tmp_path / "items.jsonl"
    rows.write_text(json.dumps({"prompt": "p", "responses": ["a", "b"]}) + "\n")
    guide = tmp_path / "guide.md"
    guide.write_text("\ufeffPrefer <b>short</b> answers.\n")  # a byte-order mark, as editors write
    assert _cli(["feedback", "import", str(rows), "--db", str(db), "--guidelines", str(guide)]) == 0
    assert "guidelines from" in capsys.readouterr().out
    store = FeedbackStore(db)
    assert store.get_item(2).guidelines == "Prefer <b>short</b> answers."
    # the same rows again with other guidelines: nothing added, the guidelines replaced
    guide.write_text("Prefer long answers.")
    assert _cli(["feedback", "import", str(rows), "--db", str(db), "--guidelines", str(guide)]) == 0
    assert store.get_item(2).guidelines == "Prefer long answers." and store.get_item(1).guidelines == ""
    # through the API, and out again with the item
    root = store.add_annotator("root", admin=True)
    client = TestClient(create_app(store, overlap=1))
    reply = client.post("/api/items", headers=auth(root),
                        json={"items": [{"prompt": "q", "responses": ["c", "d"]}], "guidelines": "Be fair."})
    assert reply.json() == {"added": 1, "already_present": 0}
    assert client.get("/api/items/3", headers=auth(root)).json()["guidelines"] == "Be fair."
    assert client.get("/api/items/1", headers=auth(root)).json()["guidelines"] == ""
    store.close()

    for content, message in ((None, "no such file"), (b"  \n", "the file is empty"),
                             (b"caf\xe9", "not UTF-8 text"), (b"x" * 20_001, "20001 characters; at most 20000")):
        bad = tmp_path / "bad-guide.txt"
        bad.unlink(missing_ok=True)
        if content is not None:
            bad.write_bytes(content)
        with pytest.raises(ConfigError, match=f"--guidelines: .*bad-guide.txt: {message}"):
            _cli(["feedback", "import", str(rows), "--db", str(db), "--guidelines", str(bad)])
