"""The real `rlhfkit feedback serve` process under load and attack, on 127.0.0.1 only: 50
annotators × 20 labels at once over HTTP (a thread each), overlap 2, random double submits on a
second connection, the server killed with SIGKILL once ~40% of the labels are in and started
again, the clients retrying with the same submission_id. Afterwards `rlhfkit feedback export`
must hold exactly the acknowledged labels. The driver is benchmarks/feedback_load.py (which also
prints the latency figure quoted in the README); every wait in it has a deadline."""

from __future__ import annotations

import hashlib
import http.client
import sqlite3

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from benchmarks.feedback_load import Server, free_port, run_load  # noqa: E402
from rlhfkit.feedback.store import FeedbackStore  # noqa: E402

ANNOTATORS, LABELS_EACH, OVERLAP = 50, 20, 2


@pytest.fixture(scope="module")
def load(tmp_path_factory):
    return run_load(tmp_path_factory.mktemp("load"), ANNOTATORS, LABELS_EACH, OVERLAP, kill=True, seed=0)


def test_every_client_finished_and_the_server_really_restarted(load):
    print("\n" + load.summary())  # the README's figure (pytest -s shows it)
    assert not load.errors, load.errors[:5]
    assert load.starts == 2
    # the kill came mid-run: some labels were in, many were still to come
    assert 0 < load.acked_at_kill < ANNOTATORS * LABELS_EACH * 0.9
    assert load.retries > 0  # clients did see the server go away
    assert load.double_submits > 0 and not load.mismatched_duplicates, load.mismatched_duplicates[:5]


def test_export_holds_exactly_the_acknowledged_labels(load):
    keys = [(row["item_id"], row["annotator"]) for row in load.exported]
    assert len(keys) == len(set(keys))  # none duplicated
    assert set(keys) == set(load.acked)  # none lost, none extra
    store = FeedbackStore(load.db)
    by_item = {item_id: store.get_item(item_id) for item_id, _ in keys}
    for row in load.exported:
        value = load.acked[(row["item_id"], row["annotator"])]["value"]["preferred"]
        item = by_item[row["item_id"]]
        # chosen = the preferred response (the first stored one on a tie), label = P(chosen better):
        # 1 for a hard choice, ½ for a tie
        chosen = {0: 0, 1: 1, "tie": 0}[value]
        assert (row["chosen"], row["rejected"]) == (item.responses[chosen], item.responses[1 - chosen])
        assert row["label"] == (0.5 if value == "tie" else 1.0)
    # each annotator stopped at 20 labels or when nothing was left for them: an item still open
    # may be one they labelled already, and one item can get a third label when two annotators
    # were shown it at once near the end, so the total is 1 000 or a few less
    for name, token in load.tokens.items():
        if name != "lead":
            progress = store.progress(store.annotator_for_token(token))
            assert progress["labelled"] == LABELS_EACH or progress["remaining"] == 0, progress
    assert 0.95 * ANNOTATORS * LABELS_EACH <= len(keys) <= ANNOTATORS * LABELS_EACH
    store.close()


def test_tokens_never_reach_the_server_logs(load):
    assert "GET /api/next" in load.logs and "POST /api/items/" in load.logs  # the access log was on
    for name, token in load.tokens.items():
        assert token not in load.logs, name


def test_tokens_are_stored_as_sha256_hashes_only(load):
    db = sqlite3.connect(load.db)
    dump = "\n".join(db.iterdump())
    for token in load.tokens.values():
        assert token not in dump
    stored = dict(db.execute("SELECT name, token_hash FROM annotators"))
    db.close()
    for name, token in load.tokens.items():
        assert stored[name] == hashlib.sha256(token.encode()).hexdigest()


def test_a_token_typed_into_the_address_is_masked_in_the_access_log(tmp_path):
    db = tmp_path / "fb.sqlite"
    store = FeedbackStore(db)
    token = store.add_annotator("ada")
    store.close()
    server = Server(db, free_port(), tmp_path, overlap=1)
    server.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        for path in (f"/?token={token}", f"/admin?x=1&token={token}&y=2", "/api/next"):
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            conn.getresponse().read()
        conn.request("GET", "/api/next", headers={"Authorization": "Bearer not-a-real-token"})
        assert conn.getresponse().status == 401
        conn.close()
    finally:
        server.stop()
    logs = server.logs()
    assert "GET /?token=*** " in logs and "/admin?x=1&token=***&y=2" in logs
    assert token not in logs and "not-a-real-token" not in logs
