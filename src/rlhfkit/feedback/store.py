"""The human-feedback store: one SQLite file (WAL) with items, annotators, labels, skips, leases.

Guarantees (DESIGN.md §7): a label is written in one `BEGIN IMMEDIATE` transaction, one row per
(item, annotator) — so concurrent submissions neither lose nor duplicate labels; resubmitting
the same answer (same `submission_id`, or the same value) returns the stored label instead of a
second one (idempotent double submit); a *different* answer to an item already labelled is a
conflict. Tokens are stored as SHA-256 hashes only. Each thread gets its own connection.

Torch-free; imports `rlhfkit.feedback.labels` and `agreement` only.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import sqlite3
import statistics
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from rlhfkit.feedback.agreement import (
    fleiss_kappa,
    krippendorff_alpha,
    percent_agreement,
)
from rlhfkit.feedback.labels import (
    AGGREGATORS,
    EXPORT_KIND,
    RESPONSES_PER_TASK,
    TASKS,
    LabelError,
    label_from_value,
    parse_value,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS annotators (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    is_admin INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    task TEXT NOT NULL,
    prompt TEXT NOT NULL,
    responses TEXT NOT NULL,          -- JSON list of candidate responses
    meta TEXT NOT NULL DEFAULT '{}',  -- JSON object carried from the imported row
    dedup_key TEXT NOT NULL UNIQUE,   -- re-importing the same row adds nothing
    created REAL NOT NULL,
    guidelines_id INTEGER REFERENCES guidelines(id)  -- what the annotators read first (per import)
);
CREATE TABLE IF NOT EXISTS guidelines (
    id INTEGER PRIMARY KEY,
    text TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: an undo names exactly one label
    item_id INTEGER NOT NULL REFERENCES items(id),
    annotator_id INTEGER NOT NULL REFERENCES annotators(id),
    submission_id TEXT NOT NULL,
    value TEXT NOT NULL,              -- JSON, normalised by labels.parse_value
    seconds REAL,                     -- time the annotator spent on the item, as the page measured it
    created REAL NOT NULL,
    UNIQUE (item_id, annotator_id),
    UNIQUE (annotator_id, submission_id)
);
CREATE TABLE IF NOT EXISTS skips (
    item_id INTEGER NOT NULL REFERENCES items(id),
    annotator_id INTEGER NOT NULL REFERENCES annotators(id),
    created REAL NOT NULL,
    PRIMARY KEY (item_id, annotator_id)
);
CREATE TABLE IF NOT EXISTS leases (
    item_id INTEGER NOT NULL REFERENCES items(id),
    annotator_id INTEGER NOT NULL REFERENCES annotators(id),
    expires REAL NOT NULL,
    PRIMARY KEY (item_id, annotator_id)
);
CREATE INDEX IF NOT EXISTS labels_by_annotator ON labels (annotator_id);
"""

LEASE_SECONDS = 600.0
"""How long an item shown to one annotator counts towards its overlap before it is labelled."""


ITEM_SQL = ("SELECT i.id, i.task, i.prompt, i.responses, i.meta, COALESCE(g.text, '') FROM items i "
            "LEFT JOIN guidelines g ON g.id = i.guidelines_id")
"""An item's columns, in the order `FeedbackStore._item` reads them."""


class StoreError(ValueError):
    """A user mistake against the store (unknown annotator name, bad import row, ...)."""


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    pass


@dataclass(frozen=True)
class Annotator:
    id: int
    name: str
    is_admin: bool


@dataclass(frozen=True)
class Item:
    id: int
    task: str
    prompt: str
    responses: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    guidelines: str = ""
    """the guidelines of the import the item came in (empty: none given)"""

    def display_order(self, annotator_id: int) -> list[int]:
        """The order this annotator sees the responses in: shuffled per (item, annotator) so
        that no response is always shown first (human position bias), and stable on reload."""
        order = list(range(len(self.responses)))
        random.Random(f"{self.id}:{annotator_id}").shuffle(order)
        return order


@dataclass(frozen=True)
class NewItem:
    task: str
    prompt: str
    responses: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.task not in TASKS:
            raise StoreError(f"unknown task '{self.task}' (one of {', '.join(TASKS)})")
        lo, hi = RESPONSES_PER_TASK[self.task]
        if not lo <= len(self.responses) <= hi:
            want = f"{lo}" if lo == hi else f"{lo} to {hi}"
            raise StoreError(f"a {self.task} item needs {want} responses, got {len(self.responses)}")
        if any(not isinstance(r, str) or not r.strip() for r in self.responses):
            raise StoreError("every response must be non-empty text")
        if len(set(self.responses)) < len(self.responses):
            first = next(i for i, r in enumerate(self.responses) if self.responses.count(r) > 1)
            again = self.responses.index(self.responses[first], first + 1)
            raise StoreError(f"responses {first + 1} and {again + 1} are the same text (nothing to compare)")

    def dedup_key(self) -> str:
        return hashlib.sha256(json.dumps([self.task, self.prompt, list(self.responses)]).encode()).hexdigest()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def task_for(n_responses: int) -> str:
    """The task an item gets when none is named: 0 → demonstration, 1 → rating, 2 → pairwise,
    3 or more → ranking."""
    return {0: "demonstration", 1: "rating", 2: "pairwise"}.get(n_responses, "ranking")


class FeedbackStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            raise StoreError(f"folder {self.path.parent} does not exist (for the feedback database {self.path})")
        self._local = threading.local()
        self._db().executescript(SCHEMA)
        self._migrate()

    # -- connections ------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)  # autocommit; explicit BEGIN
                db.execute("PRAGMA journal_mode=WAL")
            except sqlite3.DatabaseError as err:
                raise StoreError(f"{self.path}: not a feedback database ({err})") from None
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding SQLite's write lock from its first statement."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def _migrate(self) -> None:
        """Bring a database written by an older rlhfkit up to this schema (columns are only added)."""
        db = self._db()
        columns = {row[1] for row in db.execute("PRAGMA table_info(items)")}
        if "guidelines_id" not in columns:
            with self._write() as w:
                w.execute("ALTER TABLE items ADD COLUMN guidelines_id INTEGER REFERENCES guidelines(id)")

    # -- settings ---------------------------------------------------------------------------

    def get_overlap(self) -> int:
        row = self._db().execute("SELECT value FROM meta WHERE key = 'overlap'").fetchone()
        return int(row[0]) if row else 1

    def set_overlap(self, overlap: int) -> None:
        if overlap < 1:
            raise StoreError("overlap must be at least 1 (labels per item)")
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('overlap', ?)", (str(overlap),))

    # -- annotators -------------------------------------------------------------------------

    def add_annotator(self, name: str, admin: bool = False) -> str:
        """Create an annotator; returns their token (shown once: only its hash is stored)."""
        name = name.strip()
        if not name or len(name) > 64:
            raise StoreError("an annotator name must be 1 to 64 characters")
        token = secrets.token_urlsafe(24)
        try:
            with self._write() as db:
                db.execute("INSERT INTO annotators (name, token_hash, is_admin, created) VALUES (?, ?, ?, ?)",
                           (name, hash_token(token), int(admin), time.time()))
        except sqlite3.IntegrityError:
            raise StoreError(f"an annotator named '{name}' already exists (use --rotate to give them a new token)") from None
        return token

    def rotate_token(self, name: str) -> str:
        token = secrets.token_urlsafe(24)
        with self._write() as db:
            cur = db.execute("UPDATE annotators SET token_hash = ? WHERE name = ?", (hash_token(token), name))
            if cur.rowcount == 0:
                raise NotFound(f"no annotator named '{name}'")
        return token

    def annotator_for_token(self, token: str) -> Annotator | None:
        row = self._db().execute("SELECT id, name, is_admin FROM annotators WHERE token_hash = ?",
                                 (hash_token(token),)).fetchone()
        return None if row is None else Annotator(row[0], row[1], bool(row[2]))

    def annotators(self) -> list[Annotator]:
        return [Annotator(r[0], r[1], bool(r[2])) for r in self._db().execute(
            "SELECT id, name, is_admin FROM annotators ORDER BY id")]

    # -- items ------------------------------------------------------------------------------

    def add_items(self, items: Sequence[NewItem], guidelines: str | None = None) -> tuple[int, int]:
        """Insert items; returns (added, already present). `guidelines`: text the annotators are
        shown with these items; given, it also replaces the guidelines of items already present."""
        added = 0
        now = time.time()
        with self._write() as db:
            guidelines_id = None
            if guidelines is not None and guidelines.strip():
                db.execute("INSERT OR IGNORE INTO guidelines (text, created) VALUES (?, ?)", (guidelines, now))
                guidelines_id = db.execute("SELECT id FROM guidelines WHERE text = ?", (guidelines,)).fetchone()[0]
            for item in items:
                cur = db.execute(
                    "INSERT OR IGNORE INTO items (task, prompt, responses, meta, dedup_key, created, guidelines_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (item.task, item.prompt, json.dumps(list(item.responses), ensure_ascii=False),
                     json.dumps(item.meta, ensure_ascii=False, default=str), item.dedup_key(), now, guidelines_id),
                )
                added += cur.rowcount
                if cur.rowcount == 0 and guidelines_id is not None:
                    db.execute("UPDATE items SET guidelines_id = ? WHERE dedup_key = ?", (guidelines_id, item.dedup_key()))
        return added, len(items) - added

    def _item(self, row) -> Item:
        return Item(row[0], row[1], row[2], json.loads(row[3]), json.loads(row[4]), row[5])

    def get_item(self, item_id: int) -> Item:
        row = self._db().execute(ITEM_SQL + " WHERE i.id = ?", (item_id,)).fetchone()
        if row is None:
            raise NotFound(f"no item {item_id}")
        return self._item(row)

    def next_item(self, annotator: Annotator, overlap: int | None = None, now: float | None = None) -> Item | None:
        """The next item for `annotator`: one they hold a lease on, else one they have neither
        labelled nor skipped that still needs labels (fewer than `overlap`). Items not held by
        enough other annotators come first, then items closest to complete, then oldest."""
        overlap = overlap or self.get_overlap()
        now = time.time() if now is None else now
        me = annotator.id
        with self._write() as db:
            row = db.execute(
                """SELECT l.item_id FROM leases l WHERE l.annotator_id = :me AND l.expires > :now
                   AND l.item_id NOT IN (SELECT item_id FROM labels WHERE annotator_id = :me)
                   AND l.item_id NOT IN (SELECT item_id FROM skips WHERE annotator_id = :me)
                   ORDER BY l.item_id LIMIT 1""",
                {"me": me, "now": now},
            ).fetchone()
            if row is None:
                row = db.execute(
                    """WITH counts AS (SELECT item_id, COUNT(*) AS n FROM labels GROUP BY item_id),
                            held AS (SELECT item_id, COUNT(*) AS n FROM leases
                                     WHERE expires > :now AND annotator_id != :me GROUP BY item_id)
                       SELECT i.id FROM items i
                       LEFT JOIN counts c ON c.item_id = i.id
                       LEFT JOIN held h ON h.item_id = i.id
                       WHERE i.id NOT IN (SELECT item_id FROM labels WHERE annotator_id = :me)
                         AND i.id NOT IN (SELECT item_id FROM skips WHERE annotator_id = :me)
                         AND COALESCE(c.n, 0) < :overlap
                       ORDER BY (COALESCE(c.n, 0) + COALESCE(h.n, 0) >= :overlap), COALESCE(c.n, 0) DESC, i.id
                       LIMIT 1""",
                    {"me": me, "now": now, "overlap": overlap},
                ).fetchone()
            if row is None:
                return None
            db.execute("INSERT OR REPLACE INTO leases (item_id, annotator_id, expires) VALUES (?, ?, ?)",
                       (row[0], me, now + LEASE_SECONDS))
            item_row = db.execute(ITEM_SQL + " WHERE i.id = ?", (row[0],)).fetchone()
        return self._item(item_row)

    # -- labels -----------------------------------------------------------------------------

    def submit(self, annotator: Annotator, item_id: int, submission_id: str, value: Any,
               seconds: float | None = None) -> tuple[int, bool]:
        """Store one answer. Returns (label id, duplicate): duplicate is True when this exact
        submission (same submission_id or same value) was already stored. Raises NotFound,
        LabelError (the answer does not fit the item) or Conflict (a different answer exists)."""
        if not submission_id or len(submission_id) > 100:
            raise LabelError("submission_id must be 1 to 100 characters")
        item = self.get_item(item_id)
        value = parse_value(item.task, value, item.responses)
        with self._write() as db:
            existing = db.execute("SELECT id, submission_id, value FROM labels WHERE item_id = ? AND annotator_id = ?",
                                  (item_id, annotator.id)).fetchone()
            if existing is not None:
                if existing[1] == submission_id or json.loads(existing[2]) == value:
                    return existing[0], True
                raise Conflict(f"{annotator.name} already labelled item {item_id} with a different answer")
            reused = db.execute("SELECT item_id FROM labels WHERE annotator_id = ? AND submission_id = ?",
                                (annotator.id, submission_id)).fetchone()
            if reused is not None:
                raise Conflict(f"submission_id {submission_id!r} was already used for item {reused[0]}")
            cur = db.execute(
                "INSERT INTO labels (item_id, annotator_id, submission_id, value, seconds, created) VALUES (?, ?, ?, ?, ?, ?)",
                (item_id, annotator.id, submission_id, json.dumps(value, ensure_ascii=False),
                 None if seconds is None else max(0.0, float(seconds)), time.time()),
            )
            db.execute("DELETE FROM leases WHERE item_id = ? AND annotator_id = ?", (item_id, annotator.id))
            db.execute("DELETE FROM skips WHERE item_id = ? AND annotator_id = ?", (item_id, annotator.id))
            return int(cur.lastrowid), False

    def retract(self, annotator: Annotator, label_id: int, now: float | None = None) -> Item:
        """Undo one of the annotator's own labels: delete it and hand the item back to them (it is
        the next one they are shown). Returns the item."""
        now = time.time() if now is None else now
        with self._write() as db:
            row = db.execute("SELECT item_id FROM labels WHERE id = ? AND annotator_id = ?",
                             (label_id, annotator.id)).fetchone()
            if row is None:
                raise NotFound(f"{annotator.name} has no label {label_id}")
            db.execute("DELETE FROM labels WHERE id = ?", (label_id,))
            db.execute("INSERT OR REPLACE INTO leases (item_id, annotator_id, expires) VALUES (?, ?, ?)",
                       (row[0], annotator.id, now + LEASE_SECONDS))
        return self.get_item(row[0])

    def skip(self, annotator: Annotator, item_id: int) -> None:
        self.get_item(item_id)
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO skips (item_id, annotator_id, created) VALUES (?, ?, ?)",
                       (item_id, annotator.id, time.time()))
            db.execute("DELETE FROM leases WHERE item_id = ? AND annotator_id = ?", (item_id, annotator.id))

    # -- progress and statistics -------------------------------------------------------------

    def progress(self, annotator: Annotator, overlap: int | None = None) -> dict[str, Any]:
        overlap = overlap or self.get_overlap()
        db = self._db()
        labelled = db.execute("SELECT COUNT(*) FROM labels WHERE annotator_id = ?", (annotator.id,)).fetchone()[0]
        remaining = db.execute(
            """WITH counts AS (SELECT item_id, COUNT(*) AS n FROM labels GROUP BY item_id)
               SELECT COUNT(*) FROM items i LEFT JOIN counts c ON c.item_id = i.id
               WHERE COALESCE(c.n, 0) < ?
                 AND i.id NOT IN (SELECT item_id FROM labels WHERE annotator_id = ?)
                 AND i.id NOT IN (SELECT item_id FROM skips WHERE annotator_id = ?)""",
            (overlap, annotator.id, annotator.id),
        ).fetchone()[0]
        total, complete = self._completion(overlap)
        return {"annotator": annotator.name, "labelled": labelled, "remaining": remaining,
                "total_items": total, "complete_items": complete, "overlap": overlap}

    def _completion(self, overlap: int) -> tuple[int, int]:
        db = self._db()
        total = db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        complete = db.execute(
            "SELECT COUNT(*) FROM (SELECT item_id FROM labels GROUP BY item_id HAVING COUNT(*) >= ?)", (overlap,)
        ).fetchone()[0]
        return total, complete

    def labels(self, task: str | None = None) -> list[dict[str, Any]]:
        """Every stored label with its item: dicts of item, annotator, value, seconds."""
        sql = ("SELECT i.id, i.task, i.prompt, i.responses, i.meta, '', a.name, l.value, l.seconds, l.created "
               "FROM labels l JOIN items i ON i.id = l.item_id JOIN annotators a ON a.id = l.annotator_id")
        params: tuple = ()
        if task is not None:
            sql += " WHERE i.task = ?"
            params = (task,)
        rows = self._db().execute(sql + " ORDER BY i.id, l.id", params).fetchall()
        return [{"item": self._item(r[:6]), "annotator": r[6], "value": json.loads(r[7]), "seconds": r[8],
                 "created": r[9]} for r in rows]

    def stats(self, overlap: int | None = None) -> dict[str, Any]:
        """Progress per annotator, items per task and agreement per task (for the admin page)."""
        overlap = overlap or self.get_overlap()
        db = self._db()
        total, complete = self._completion(overlap)
        people = []
        for a in self.annotators():
            seconds = [r[0] for r in db.execute(
                "SELECT seconds FROM labels WHERE annotator_id = ? AND seconds IS NOT NULL", (a.id,))]
            n = db.execute("SELECT COUNT(*) FROM labels WHERE annotator_id = ?", (a.id,)).fetchone()[0]
            skipped = db.execute("SELECT COUNT(*) FROM skips WHERE annotator_id = ?", (a.id,)).fetchone()[0]
            people.append({"name": a.name, "admin": a.is_admin, "labels": n, "skipped": skipped,
                           "median_seconds": statistics.median(seconds) if seconds else None})
        tasks = []
        for task, n_items, n_labels in db.execute(
            "SELECT i.task, COUNT(DISTINCT i.id), COUNT(l.id) FROM items i LEFT JOIN labels l ON l.item_id = i.id GROUP BY i.task"
        ):
            tasks.append({"task": task, "items": n_items, "labels": n_labels, **agreement_for(task, self.labels(task))})
        return {"overlap": overlap, "items": total, "complete_items": complete, "annotators": people, "tasks": tasks}

    # -- export -----------------------------------------------------------------------------

    def export(self, kind: str, aggregate: str = "each") -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Training rows of record `kind` (pairwise, ranking, rating, thumbs, rewrite, sft) and a
        report of what was left out. aggregate="each": one row per label; "mean": one row per item
        (pairwise: share of votes, ratings: mean, ranking: Borda count, thumbs: majority)."""
        tasks = [t for t, k in EXPORT_KIND.items() if k == kind]
        if not tasks:
            raise StoreError(f"unknown export kind '{kind}' (one of {', '.join(sorted(set(EXPORT_KIND.values())))})")
        task = tasks[0]
        if aggregate not in ("each", "mean"):
            raise StoreError("aggregate must be 'each' or 'mean'")
        if aggregate == "mean" and task not in AGGREGATORS:
            raise StoreError(f"{kind} labels are texts and cannot be averaged; use --aggregate each")
        rows: list[dict[str, Any]] = []
        report = {"labels": 0, "rows": 0, "left_out": 0}
        by_item: dict[int, list[dict]] = {}
        for entry in self.labels(task):
            report["labels"] += 1
            by_item.setdefault(entry["item"].id, []).append(entry)
        for entries in by_item.values():
            item = entries[0]["item"]
            if aggregate == "each":
                for e in entries:
                    row = label_from_value(task, item.prompt, item.responses, e["value"]).to_row()
                    if row is None:
                        report["left_out"] += 1
                        continue
                    rows.append(row | {"item_id": item.id, "annotator": e["annotator"]})
            else:
                label = AGGREGATORS[task](item.prompt, item.responses, [e["value"] for e in entries])
                row = None if label is None else label.to_row()
                if row is None:
                    report["left_out"] += len(entries)
                    continue
                rows.append(row | {"item_id": item.id, "annotators": len(entries)})
        report["rows"] = len(rows)
        return rows, report


def agreement_for(task: str, entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Agreement statistics for one task's labels (items with two or more labels).

    pairwise / thumbs: nominal Krippendorff's α, Fleiss' κ and raw percent agreement;
    rating: interval α; ranking: interval α over each response's rank position;
    rewrite / demonstration: none (free text)."""
    units: dict[Any, list] = {}
    for e in entries:
        item, value = e["item"], e["value"]
        if task == "pairwise":
            units.setdefault(item.id, []).append(str(value["preferred"]))
        elif task == "thumbs":
            units.setdefault(item.id, []).append(value["thumbs_up"])
        elif task == "rating":
            units.setdefault(item.id, []).append(value["rating"])
        elif task == "ranking":
            for rank, index in enumerate(value["order"]):
                units.setdefault((item.id, index), []).append(rank)
    multi = [u for u in units.values() if len(u) >= 2]
    out: dict[str, Any] = {"items_with_overlap": len({k[0] if isinstance(k, tuple) else k for k, u in units.items() if len(u) >= 2})}
    if task in ("pairwise", "thumbs"):
        out |= {"krippendorff_alpha": krippendorff_alpha(multi, "nominal"), "fleiss_kappa": fleiss_kappa(multi),
                "percent_agreement": percent_agreement(multi), "alpha_level": "nominal"}
    elif task in ("rating", "ranking"):
        out |= {"krippendorff_alpha": krippendorff_alpha(multi, "interval"), "alpha_level": "interval"}
    return out
