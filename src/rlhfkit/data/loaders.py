"""Read JSONL / JSON / CSV / Parquet files and saved HF `datasets` folders into typed records.

Every row is checked against its kind's schema (`schemas.KINDS`). By default the first bad row
stops the load with one line naming file, row and field; with `skip_invalid=True` bad rows are
skipped, counted and returned in `LoadResult.skipped` — never dropped silently. Rows are
numbered from 1 (for JSONL: the line number; for CSV: the data row, header excluded).
"""

from __future__ import annotations

import csv
import difflib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from rlhfkit.data.schemas import FIELDS, KINDS, DataError, RowError


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
    unused_fields: dict[str, int] = field(default_factory=dict)
    """columns the kind does not read -> number of valid rows that have them (ignored, reported)"""

    def summary(self) -> str:
        return f"{len(self.records)} rows loaded, {len(self.skipped)} skipped"


_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _bad_byte(text: str) -> int | None:
    """The first undecodable byte of `text` (decoded with errors="surrogateescape", which maps
    byte b to the lone surrogate U+DC00 + b; valid UTF-8 never yields those), or None."""
    found = _ESCAPED_BYTE.search(text)
    return None if found is None else ord(found.group()) - 0xDC00


def _not_utf8(byte: int) -> str:
    return f"not valid UTF-8 (byte 0x{byte:02x}); save the file as UTF-8"


def _check_utf8(row: Any) -> Any:
    """`row`, or a RowError naming the first field whose text (or name) holds a byte that is not
    UTF-8, so that one bad byte costs one row, not the file."""
    if not isinstance(row, dict):
        return row
    for key, value in row.items():
        byte = _bad_byte(key) if isinstance(key, str) else None
        if byte is None and isinstance(value, str):
            byte = _bad_byte(value)
        elif byte is None and isinstance(value, (list, dict)):  # text nested in lists and objects
            byte = _bad_byte(json.dumps(value, ensure_ascii=False, default=str))
        if byte is not None:
            name = key.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if isinstance(key, str) else str(key)
            return RowError(name, _not_utf8(byte))
    return row


def _unreadable(err: ValueError) -> str:
    if "digits" in str(err):
        return "not readable JSON: a number of more than 4300 digits"
    return f"not readable JSON: {str(err).splitlines()[0]:.120}"


def _iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(_BOM):  # spreadsheet and Windows editors write one
                raw = raw[len(_BOM):]
            line = raw.decode("utf-8", "surrogateescape")
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as err:
                byte = _bad_byte(line)
                reason = _not_utf8(byte) if byte is not None else f"not valid JSON: {err.msg} at column {err.colno}"
                yield lineno, RowError("(line)", reason)
            except RecursionError:
                yield lineno, RowError("(line)", "JSON nested too deeply to read")
            except ValueError as err:  # Python refuses integers of more than 4300 digits
                yield lineno, RowError("(line)", _unreadable(err))


def _iter_json(path: Path) -> Iterator[tuple[int, Any]]:
    text = path.read_bytes().decode("utf-8-sig", "surrogateescape")
    if not text.strip():
        raise DataError(f"{path}: empty file (no rows)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        byte = _bad_byte(text)
        if byte is not None:
            raise DataError(f"{path}: line {text.count(chr(10), 0, err.pos) + 1}: {_not_utf8(byte)}") from None
        raise DataError(f"{path}: not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to read") from None
    except ValueError as err:
        raise DataError(f"{path}: {_unreadable(err)}") from None
    if isinstance(data, dict) and "data" in data and isinstance(data["data"], list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of rows (or {{\"data\": [...]}})")
    yield from enumerate(data, start=1)


def _csv_header(path: Path, reader: csv.DictReader) -> list[str]:
    try:
        names = reader.fieldnames
    except csv.Error as err:
        raise DataError(f"{path}: header row: cannot be read as CSV: {err}") from None
    if names is None:
        raise DataError(f"{path}: empty CSV file (no header row)")
    for name in names:
        if _bad_byte(name) is not None:
            raise DataError(f"{path}: header row: {_not_utf8(_bad_byte(name))}")
        if names.count(name) > 1:  # DictReader would keep only the last column of that name
            raise DataError(f"{path}: header row: column '{name}' appears {names.count(name)} times")
    return list(names)


def _iter_csv(path: Path) -> Iterator[tuple[int, Any]]:
    # A cell may be as long as a JSONL line (the csv module's default cap is 128 KiB).
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.DictReader(fh)
        names = _csv_header(path, reader)
        rowno = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                rowno += 1
                yield rowno, RowError("(row)", f"cannot be read as CSV: {err}")
                continue
            rowno += 1
            if None in row:
                yield rowno, RowError("(row)", f"has {len(names) + len(row[None])} cells but the header has {len(names)}")
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
    if readers[suffix] in (_iter_jsonl, _iter_json, _iter_csv):
        with open(path, "rb") as fh:
            if fh.read(2) in _UTF16_BOMS:
                raise DataError(f"{path}: the file is UTF-16 encoded; save it as UTF-8")
        return (_checked(rowno, row) for rowno, row in readers[suffix](path))
    return readers[suffix](path)


def _checked(rowno: int, row: Any) -> tuple[int, Any]:
    return rowno, _check_utf8(row)


def _typo_hint(err: RowError, row: dict, known: frozenset[str] | None) -> RowError:
    """A missing field next to an unused column of a similar name: say so (a typo, usually)."""
    if err.reason != "missing" or known is None:
        return err
    close = difflib.get_close_matches(err.field, [k for k in row if isinstance(k, str) and k not in known], n=1)
    return RowError(err.field, f"missing (the row has '{close[0]}': a typo?)") if close else err


def load_records(path: str | Path, kind: str, skip_invalid: bool = False, split: str | None = None,
                 limit: int | None = None, check: Callable[[Any], None] | None = None) -> LoadResult:
    """Load and validate every row of `path` as records of `kind` (see `schemas.KINDS`).
    `check(record)` may raise a RowError for a record that parses but that the caller cannot use
    (e.g. a label no template verbalises): such rows fail, or are skipped, like any bad row."""
    if kind not in KINDS:
        raise DataError(f"unknown record kind '{kind}' (one of {', '.join(sorted(KINDS))})")
    parse, known = KINDS[kind], FIELDS[kind]
    result = LoadResult(records=[])
    rows = 0
    for rowno, row in iter_rows(path, split):
        rows += 1
        try:
            if isinstance(row, RowError):
                raise row
            if not isinstance(row, dict):
                raise RowError("(row)", f"expected an object with named fields, got {type(row).__name__}")
            try:
                record = parse(row)
                if check is not None:
                    check(record)
                result.records.append(record)
            except RowError as err:
                raise _typo_hint(err, row, known) from None
            for name in row if known is not None else ():
                if name not in known:
                    result.unused_fields[str(name)] = result.unused_fields.get(str(name), 0) + 1
        except RowError as err:
            skipped = SkippedRow(str(path), rowno, err.field, err.reason)
            if not skip_invalid:
                raise DataError(f"{skipped} (use --skip-invalid to skip bad rows)") from None
            result.skipped.append(skipped)
        if limit is not None and len(result.records) >= limit:
            break
    if not rows:
        raise DataError(f"{path}: empty file (no rows)")
    if not result.records:
        raise DataError(f"{path}: no valid {kind} rows ({len(result.skipped)} skipped)")
    return result


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    """Write rows as JSON lines, atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())  # on disk before the rename makes it visible
    tmp.replace(path)
