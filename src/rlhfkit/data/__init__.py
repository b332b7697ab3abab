"""Data: typed records, loaders for JSONL/CSV/Parquet/saved HF datasets, validation.

May import `rlhfkit.types`; never models, trainers or cli. Loading is torch-free.
"""

from rlhfkit.data.loaders import (
    LoadResult,
    SkippedRow,
    iter_rows,
    load_records,
    write_jsonl,
)
from rlhfkit.data.schemas import KINDS, DataError, RowError

__all__ = ["KINDS", "DataError", "LoadResult", "RowError", "SkippedRow", "iter_rows", "load_records", "write_jsonl"]
