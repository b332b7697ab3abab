"""Read what `rlhfkit label` judges: pairs (with or without gold labels), responses to rate,
few-shot examples. Torch-free; bad rows raise `DataError` naming file, row and field."""

from __future__ import annotations

from pathlib import Path

from rlhfkit.data.loaders import SkippedRow, iter_rows
from rlhfkit.data.schemas import DataError, RowError, _text, _text_list, parse_pairwise
from rlhfkit.feedback.judge import FewShotExample
from rlhfkit.feedback.labeler import Pair


def _rows(path: str | Path, parse, skip_invalid: bool, limit: int = 0):
    """(parsed values, skipped rows) with the loaders' conventions for bad rows."""
    values, skipped = [], []
    rows = 0
    for rowno, row in iter_rows(path):
        rows += 1
        try:
            if isinstance(row, RowError):
                raise row
            if not isinstance(row, dict):
                raise RowError("(row)", f"expected an object with named fields, got {type(row).__name__}")
            values.append((rowno, parse(row)))
        except RowError as err:
            s = SkippedRow(str(path), rowno, err.field, err.reason)
            if not skip_invalid:
                raise DataError(f"{s} (use --skip-invalid to skip bad rows)") from None
            skipped.append(s)
    if not rows:
        raise DataError(f"{path}: empty file (no rows)")
    return values, skipped


def read_pairs(path: str | Path, skip_invalid: bool = False) -> tuple[list[Pair], list[SkippedRow]]:
    """Pairs to judge, in file order. Accepted rows:

    - pairwise rows {prompt, chosen, rejected[, label]}: gold P(chosen preferred) = label (1 when
      absent, as everywhere in rlhfkit);
    - {prompt, responses: [a, b]}: no gold;
    - `rlhfkit generate` output {prompt, response}: consecutive responses to the same prompt are
      paired (1st with 2nd, 3rd with 4th, ...); no gold.
    """
    pairs: list[Pair] = []
    loose: dict[str, list[tuple[int, str]]] = {}

    def parse(row: dict):
        if "chosen" in row or "rejected" in row:
            record = parse_pairwise(row)
            return ("pair", Pair(record.prompt, record.chosen, record.rejected, record.label))
        if "responses" in row:
            responses = _text_list(row, "responses", min_len=2)
            if len(responses) != 2:
                raise RowError("responses", f"a pair needs exactly 2 responses, got {len(responses)}")
            return ("pair", Pair(_text(row, "prompt", allow_empty=True), responses[0], responses[1]))
        if "response" in row:
            return ("single", (_text(row, "prompt", allow_empty=True), _text(row, "response")))
        raise RowError("chosen", "missing (a pair needs chosen + rejected, responses [a, b], or prompt + response rows)")

    values, skipped = _rows(path, parse, skip_invalid)
    for rowno, (what, value) in values:
        if what == "pair":
            pairs.append(value)
        else:
            loose.setdefault(value[0], []).append((rowno, value[1]))
    for prompt, responses in loose.items():
        for i in range(0, len(responses) - 1, 2):
            pairs.append(Pair(prompt, responses[i][1], responses[i + 1][1]))
        if len(responses) % 2:
            rowno = responses[-1][0]
            s = SkippedRow(str(path), rowno, "response", "no second response to the same prompt to pair it with")
            if not skip_invalid:
                raise DataError(f"{s} (use --skip-invalid to skip bad rows)")
            skipped.append(s)
    if not pairs:
        raise DataError(f"{path}: no pairs to label" + (f" ({len(skipped)} rows skipped)" if skipped else ""))
    return pairs, skipped


def read_responses(path: str | Path, skip_invalid: bool = False) -> tuple[list[tuple[str, str]], list[SkippedRow]]:
    """(prompt, response) rows to rate."""
    values, skipped = _rows(path, lambda row: (_text(row, "prompt", allow_empty=True), _text(row, "response")),
                            skip_invalid)
    if not values:
        raise DataError(f"{path}: no responses to rate" + (f" ({len(skipped)} rows skipped)" if skipped else ""))
    return [v for _, v in values], skipped


def read_examples(path: str | Path) -> tuple[FewShotExample, ...]:
    """Few-shot examples from a pairwise file: the chosen response is shown as preferred, in
    alternating positions so that the examples themselves teach no position."""
    values, _ = _rows(path, parse_pairwise, skip_invalid=False)
    out = []
    for i, (_, r) in enumerate(values):
        if r.label < 0.5:
            r = type(r)(r.prompt, r.rejected, r.chosen, 1.0 - r.label)
        if i % 2 == 0:
            out.append(FewShotExample(r.prompt, r.chosen, r.rejected, 1))
        else:
            out.append(FewShotExample(r.prompt, r.rejected, r.chosen, 2))
    return tuple(out)
