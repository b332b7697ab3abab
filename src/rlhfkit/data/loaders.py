"""Read JSONL / JSON / CSV / Parquet files and saved HF `datasets` folders into typed records.

Every row is checked against its kind's schema (`schemas.KINDS`). By default the first bad row
stops the load with one line naming file, row and field; with `skip_invalid=True` bad rows are
skipped, counted and returned in `LoadResult.skipped` — never dropped silently. Rows are
numbered from 1 (for JSONL: the line number; for CSV: the data row, header excluded).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from rlhfkit.data.schemas import KINDS, DataError, RowError


@dataclass(frozen=True)
class SkippedRow:
    file: str
    row: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: row {self.row}: field '{self.field}': {self.reason}"


@dataclass
class LoadResult:
    records: list[Any]
    skipped: list[SkippedRow] = field(default_factory=list)

    def summary(self) -> str:
        return f"{len(self.records)} rows loaded, {len(self.skipped)} skipped"


def _iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as err:
                yield lineno, RowError("(line)", f"not valid JSON: {err.msg} at column {err.colno}")


def _iter_json(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None
    if isinstance(data, dict) and "data" in data and isinstance(data["data"], list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of rows (or {{\"data\": [...]}})")
    yield from enumerate(data, start=1)


def _iter_csv(path: Path) -> Iterator[tuple[int, Any]]:
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:
            raise DataError(f"{path}: empty CSV file (no header row)")
        for rowno, row in enumerate(reader, start=1):
            if None in row:
                yield rowno, RowError("(row)", f"has {len(reader.fieldnames) + len(row[None])} cells but the header has {len(reader.fieldnames)}")
                continue
            yield rowno, {k: (None if v == "" else v) for k, v in row.items()}


def _iter_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for corrupt files
        raise DataError(f"{path}: cannot read as Parquet: {err}") from None
    yield from enumerate(table.to_pylist(), start=1)


def _iter_hf_dataset(path: Path, split: str | None) -> Iterator[tuple[int, Any]]:
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(str(path))
    if isinstance(ds, DatasetDict):
        name = split or ("train" if "train" in ds else next(iter(ds)))
        if name not in ds:
            raise DataError(f"{path}: no split '{name}' (splits: {', '.join(ds)})")
        ds = ds[name]
    yield from enumerate(ds, start=1)


def iter_rows(path: str | Path, split: str | None = None) -> Iterator[tuple[int, Any]]:
    """Yield (row number, raw row) from any supported source. A row may be a `RowError` when
    the file itself is malformed at that row (e.g. a broken JSON line)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            return _iter_hf_dataset(path, split)
        raise DataError(f"{path}: a folder, but not one saved by `datasets` (no dataset_info.json / dataset_dict.json)")
    suffix = "".join(path.suffixes[-1:]).lower()
    readers = {".jsonl": _iter_jsonl, ".ndjson": _iter_jsonl, ".json": _iter_json, ".csv": _iter_csv,
               ".parquet": _iter_parquet, ".pq": _iter_parquet}
    if suffix not in readers:
        raise DataError(f"{path}: unknown file type '{suffix}' (use .jsonl, .json, .csv, .parquet or a saved datasets folder)")
    return readers[suffix](path)


def load_records(path: str | Path, kind: str, skip_invalid: bool = False, split: str | None = None,
                 limit: int | None = None) -> LoadResult:
    """Load and validate every row of `path` as records of `kind` (see `schemas.KINDS`)."""
    if kind not in KINDS:
        raise DataError(f"unknown record kind '{kind}' (one of {', '.join(sorted(KINDS))})")
    parse = KINDS[kind]
    result = LoadResult(records=[])
    for rowno, row in iter_rows(path, split):
        try:
            if isinstance(row, RowError):
                raise row
            if not isinstance(row, dict):
                raise RowError("(row)", f"expected an object with named fields, got {type(row).__name__}")
            result.records.append(parse(row))
        except RowError as err:
            skipped = SkippedRow(str(path), rowno, err.field, err.reason)
            if not skip_invalid:
                raise DataError(f"{skipped} (use --skip-invalid to skip bad rows)") from None
            result.skipped.append(skipped)
        if limit is not None and len(result.records) >= limit:
            break
    if not result.records:
        raise DataError(f"{path}: no valid {kind} rows" + (f" ({len(result.skipped)} skipped)" if result.skipped else ""))
    return result


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    """Write rows as JSON lines, atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
