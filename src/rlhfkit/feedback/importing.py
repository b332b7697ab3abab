"""Turn rows of a data file into feedback items (`rlhfkit feedback import`).

Accepted rows (JSONL / JSON / CSV / Parquet / saved datasets, via `rlhfkit.data.iter_rows`):

- `{prompt, responses: [...]}`: one item with those candidates;
- `{prompt, chosen, rejected}`: a pairwise item (the page shuffles the order anyway);
- `{prompt, response}` (what `rlhfkit generate --n K` writes): rows with the same prompt are
  grouped into one item with K candidates, in file order;
- `{prompt}` alone: a demonstration item (the annotator writes the response).

Without `task`, an item's task follows from its number of candidates (0 demonstration,
1 rating, 2 pairwise, 3+ ranking). With a single-response task (rating, thumbs, rewrite),
every candidate becomes its own item. A row may carry its own `task` column.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhfkit.data.loaders import SkippedRow, iter_rows
from rlhfkit.data.schemas import DataError, RowError, _text, _text_list
from rlhfkit.feedback.labels import RESPONSES_PER_TASK, TASKS
from rlhfkit.feedback.store import NewItem, StoreError, task_for

_KNOWN = {"prompt", "responses", "response", "chosen", "rejected", "task", "label", "margin"}


def _candidates(row: dict) -> tuple[str, ...]:
    if "responses" in row and row["responses"] is not None:
        return _text_list(row, "responses", min_len=1)
    if "chosen" in row or "rejected" in row:
        return (_text(row, "chosen"), _text(row, "rejected"))
    if "response" in row and row["response"] is not None:
        return (_text(row, "response"),)
    # a prompt alone is a demonstration item, unless a column looks like a misspelt response field
    unknown = [k for k in row if isinstance(k, str) and k not in _KNOWN]
    for name in ("responses", "response", "chosen", "rejected"):
        close = difflib.get_close_matches(name, unknown, n=1, cutoff=0.8)
        if close:
            raise RowError(name, f"missing (the row has '{close[0]}': a typo?)")
    return ()


def _items_for(task: str | None, prompt: str, candidates: tuple[str, ...], meta: dict) -> list[NewItem]:
    task = task or task_for(len(candidates))
    if task not in TASKS:
        raise RowError("task", f"unknown task '{task}' (one of {', '.join(TASKS)})")
    if RESPONSES_PER_TASK[task] == (1, 1) and len(candidates) > 1:
        return [NewItem(task, prompt, (c,), meta) for c in candidates]
    try:
        return [NewItem(task, prompt, candidates, meta)]
    except StoreError as err:
        raise RowError("responses", str(err)) from None


@dataclass
class ImportFile:
    """What `read_items` found: the items, the bad rows skipped (with `skip_invalid`), and the rows
    that repeat an earlier row of the same file (imported once): (row, earlier row) pairs."""

    items: list[NewItem]
    skipped: list[SkippedRow] = field(default_factory=list)
    repeated: list[tuple[int, int]] = field(default_factory=list)


def _row_task(row: dict, default: str | None) -> str | None:
    value = row.get("task")
    if value is None or value == "":
        return default
    if not isinstance(value, str) or value not in TASKS:
        raise RowError("task", f"unknown task {value!r:.60} (one of {', '.join(TASKS)})")
    return value


def read_items(path: str | Path, task: str | None = None, skip_invalid: bool = False,
               split: str | None = None) -> ImportFile:
    """Read `path` into items; bad rows stop the import with file/row/field (or, with
    `skip_invalid`, are returned as skipped). A row that repeats an earlier one (the same item,
    or the same response to a grouped prompt) is counted in `repeated`, not imported twice."""
    if task is not None and task not in TASKS:
        raise DataError(f"unknown task '{task}' (one of {', '.join(TASKS)})")
    out = ImportFile(items=[])
    first_row: dict[str, int] = {}  # item dedup key -> the row it came from
    groups: dict[str, tuple[int, dict[str, int], dict, str | None]] = {}  # prompt -> (row, {response: row}, meta, task)

    def bad(rowno: int, err: RowError) -> None:
        s = SkippedRow(str(path), rowno, err.field, err.reason)
        if not skip_invalid:
            raise DataError(f"{s} (use --skip-invalid to skip bad rows)")
        out.skipped.append(s)

    def add(rowno: int, items: list[NewItem]) -> None:
        for item in items:
            key = item.dedup_key()
            if key in first_row:
                out.repeated.append((rowno, first_row[key]))
                continue
            first_row[key] = rowno
            out.items.append(item)

    rows = 0
    for rowno, row in iter_rows(path, split):
        rows += 1
        try:
            if isinstance(row, RowError):
                raise row
            if not isinstance(row, dict):
                raise RowError("(row)", f"expected an object with named fields, got {type(row).__name__}")
            prompt = _text(row, "prompt", allow_empty=True)
            row_task = _row_task(row, task)
            candidates = _candidates(row)
            meta = {k: v for k, v in row.items() if k not in _KNOWN}
            grouped = "response" in row and "responses" not in row and "chosen" not in row
            if grouped and (row_task is None or RESPONSES_PER_TASK[row_task][1] > 1):
                _, responses, _, _ = groups.setdefault(prompt, (rowno, {}, meta, row_task))
                if candidates[0] in responses:
                    out.repeated.append((rowno, responses[candidates[0]]))
                else:
                    responses[candidates[0]] = rowno
                continue
            items = _items_for(row_task, prompt, candidates, meta)
        except RowError as err:
            bad(rowno, err)
            continue
        add(rowno, items)
    for prompt, (rowno, responses, meta, row_task) in groups.items():
        try:
            items = _items_for(row_task, prompt, tuple(responses), meta)
        except RowError as err:
            bad(rowno, RowError(err.field, f"{err.reason} (the {len(responses)} rows with this prompt, first at row {rowno})"))
            continue
        add(rowno, items)
    if not rows:
        raise DataError(f"{path}: empty file (no rows)")
    if not out.items:
        raise DataError(f"{path}: no items to import" + (f" ({len(out.skipped)} rows skipped)" if out.skipped else ""))
    return out


def items_from_json(rows: list[dict[str, Any]]) -> list[NewItem]:
    """Items posted to the API: {prompt, responses, task?, meta?} each."""
    out = []
    for i, row in enumerate(rows):
        try:
            out.extend(_items_for(row.get("task"), row["prompt"], tuple(row.get("responses") or ()), row.get("meta") or {}))
        except RowError as err:
            raise StoreError(f"item {i}: {err}") from None
    return out
