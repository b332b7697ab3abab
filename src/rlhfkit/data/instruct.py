"""Instruction data from labelled data: rows of (text, label) become prompt/completion rows through
instruction templates, as FLAN and T0 built instruction-tuning sets out of classification benchmarks
(Wei et al. 2022; Sanh et al. 2022): one task, several templates, each with its own wording of the
label (its verbaliser).

A template is a prompt with a `{text}` placeholder and a completion with a `{label}` placeholder;
its verbaliser maps each raw label to the words the completion uses ("negative" -> "dislikes" in
"The author {label} the movie."). Built-in template sets: `sentiment` (positive / negative, also
pos / neg and 1 / 0) and `classify` (any labels, written as they are). A YAML or JSON file gives
your own (`load_template_file`): a top-level `labels` map, and `templates`, each with `prompt`,
`completion` and optionally its own `labels`.

The output feeds `rlhfkit sft` (kind sft: prompt + completion). Imports no torch.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from rlhfkit.data.loaders import load_records, write_jsonl
from rlhfkit.data.schemas import DataError, RowError
from rlhfkit.types import LabelledRecord


@dataclass(frozen=True)
class Template:
    """One instruction template. prompt: has `{text}`; completion: has `{label}`; labels: the
    verbaliser, raw label -> the words in the completion (None: the label as it is)."""

    prompt: str
    completion: str
    labels: Mapping[str, str] | None = None

    def verbalise(self, label: str) -> str | None:
        """The completion's wording of `label` (matched as written, then in lower case), or None
        when the verbaliser has no entry for it."""
        if self.labels is None:
            return label
        for key in (label, label.strip().lower()):
            if key in self.labels:
                return self.labels[key]
        return None

    def render(self, record: LabelledRecord) -> dict[str, str]:
        words = self.verbalise(record.label)
        if words is None:
            raise RowError("label", f"{record.label!r} has no wording in the template's labels ({', '.join(self.labels)})")
        return {"prompt": self.prompt.format(text=record.text), "completion": self.completion.format(label=words)}


@dataclass(frozen=True)
class TemplateSet:
    name: str
    templates: tuple[Template, ...]
    source: str = field(default="", compare=False)


_SENTIMENT_WORDS = {
    "likes": {"positive": "likes", "negative": "dislikes"},
    "Positive": {"positive": "Positive", "negative": "Negative"},
    "yes": {"positive": "Yes", "negative": "No"},
    "good": {"positive": "good", "negative": "bad"},
    "enjoyed": {"positive": "enjoyed it", "negative": "did not enjoy it"},
}


def _with_aliases(words: Mapping[str, str]) -> dict[str, str]:
    """positive/negative words, also under the usual other spellings of those labels."""
    aliases = {"positive": ("positive", "pos", "1"), "negative": ("negative", "neg", "0")}
    return {alias: words[label] for label, names in aliases.items() for alias in names}


BUILTIN: dict[str, TemplateSet] = {
    "sentiment": TemplateSet("sentiment", (
        Template("Read the review and say whether the author likes the movie.\n\nReview: {text}\n",
                 "The author {label} the movie.", _with_aliases(_SENTIMENT_WORDS["likes"])),
        Template("{text}\n\nIs the sentiment of this review positive or negative?\n",
                 "{label}.", _with_aliases(_SENTIMENT_WORDS["Positive"])),
        Template("Here is a movie review:\n{text}\n\nWould the reviewer recommend this movie? Answer yes or no.\n",
                 "{label}.", _with_aliases(_SENTIMENT_WORDS["yes"])),
        Template("Review: {text}\n\nIn one word, did the reviewer think the movie was good or bad?\n",
                 "The reviewer thought it was {label}.", _with_aliases(_SENTIMENT_WORDS["good"])),
        Template("What does the writer of this review feel about the film?\n\n{text}\n",
                 "The writer {label}.", _with_aliases(_SENTIMENT_WORDS["enjoyed"])),
    ), source="built-in"),
    "classify": TemplateSet("classify", (
        Template("Classify the following text.\n\nText: {text}\n", "{label}"),
        Template("{text}\n\nWhich category does the text above belong to?\n", "It belongs to: {label}"),
        Template("Read the text and give its label.\n\n{text}\n", "Label: {label}"),
    ), source="built-in"),
}


def _placeholders(text: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as err:  # a lone "{" or "}"
        raise ValueError(f"{err} (write a literal brace as {{{{ or }}}})") from None


def _parse_template(raw: Any, where: str, default_labels: Mapping[str, str] | None) -> Template:
    if not isinstance(raw, dict):
        raise DataError(f"{where}: expected a mapping with 'prompt' and 'completion'")
    parts = {}
    for key, needed in (("prompt", "text"), ("completion", "label")):
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{where}: field '{key}': missing or empty (text with a {{{needed}}} placeholder)")
        try:
            names = _placeholders(value)
        except ValueError as err:
            raise DataError(f"{where}: field '{key}': {err}") from None
        if needed not in names:
            raise DataError(f"{where}: field '{key}': has no {{{needed}}} placeholder")
        if names - {needed}:
            raise DataError(f"{where}: field '{key}': unknown placeholder(s) "
                            f"{', '.join('{' + n + '}' for n in sorted(names - {needed}))} (only {{{needed}}} here)")
        parts[key] = value
    labels = _labels(raw["labels"], f"{where}: field 'labels'") if "labels" in raw else default_labels
    unknown = sorted(set(raw) - {"prompt", "completion", "labels"})
    if unknown:
        raise DataError(f"{where}: unknown field(s) {', '.join(unknown)} (a template has prompt, completion, labels)")
    return Template(parts["prompt"], parts["completion"], labels)


def _labels(raw: Any, where: str) -> dict[str, str]:
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{where}: expected a non-empty mapping of label -> words")
    out = {}
    for key, value in raw.items():
        if isinstance(key, bool) or not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value).strip():
            raise DataError(f"{where}: label {key!r}: expected words (text), got {value!r:.60}")
        out[str(key).strip()] = str(value)
    return out


def load_template_file(path: str | Path) -> TemplateSet:
    """A template set from a YAML/JSON file (see the module docstring); errors name the file,
    the template and the field."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the template file: {err}") from None
    except yaml.YAMLError as err:
        raise DataError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("templates"), list) or not data["templates"]:
        raise DataError(f"{path}: expected a mapping with 'templates': a non-empty list of prompt/completion templates")
    unknown = sorted(set(data) - {"templates", "labels"})
    if unknown:
        raise DataError(f"{path}: unknown top-level field(s) {', '.join(map(str, unknown))} (expected templates, labels)")
    labels = _labels(data["labels"], f"{path}: field 'labels'") if "labels" in data else None
    templates = tuple(_parse_template(t, f"{path}: templates[{i}]", labels) for i, t in enumerate(data["templates"]))
    return TemplateSet(path.stem, templates, source=str(path))


def template_set(spec: str) -> TemplateSet:
    """A built-in set by name, or a template file by path."""
    if spec in BUILTIN:
        return BUILTIN[spec]
    if Path(spec).suffix.lower() in (".yaml", ".yml", ".json"):
        if not Path(spec).is_file():
            raise DataError(f"{spec}: no such template file")
        return load_template_file(spec)
    raise DataError(f"unknown template set {spec!r}: a built-in one ({', '.join(BUILTIN)}) or a .yaml/.json file")


def label_check(templates: TemplateSet):
    """A `load_records` check: every template can word the row's label."""
    def check(record: LabelledRecord) -> None:
        for i, t in enumerate(templates.templates):
            if t.verbalise(record.label) is None:
                raise RowError("label", f"{record.label!r} is not a label of template {i} of {templates.name!r} "
                                        f"(its labels: {', '.join(t.labels)}); add it to the template's labels")
    return check


def instruct_rows(records: Sequence[LabelledRecord], templates: TemplateSet, templates_per_row: int = 1,
                  seed: int = 0) -> list[dict[str, str]]:
    """Each record through `templates_per_row` distinct templates drawn at random (seeded; 0: every
    template), in record order: rows {prompt, completion, template, label}, `template` naming the
    set and the template's index."""
    n = len(templates.templates)
    if templates_per_row > n:
        raise DataError(f"--templates-per-row {templates_per_row}: the set {templates.name!r} has only {n} templates")
    rng = random.Random(seed)
    rows = []
    for record in records:
        chosen = range(n) if templates_per_row == 0 else sorted(rng.sample(range(n), templates_per_row))
        for i in chosen:
            rows.append({**templates.templates[i].render(record), "template": f"{templates.name}/{i}", "label": record.label})
    return rows


def write_instruct(file: str, templates: str, output: str, templates_per_row: int = 1, seed: int = 0,
                   skip_invalid: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """`rlhfkit data instruct`: read labelled rows, write instruction rows to `output`. Returns a
    summary: rows read, skipped, written, the template set and the label counts."""
    chosen = template_set(templates)
    if Path(output).exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    result = load_records(file, "labelled", skip_invalid=skip_invalid, check=label_check(chosen))
    rows = instruct_rows(result.records, chosen, templates_per_row, seed)
    write_jsonl(output, rows)
    labels: dict[str, int] = {}
    for record in result.records:
        labels[record.label] = labels.get(record.label, 0) + 1
    return {"file": file, "output": output, "templates": chosen.name, "template_count": len(chosen.templates),
            "rows_read": len(result.records), "rows_skipped": len(result.skipped), "rows_written": len(rows),
            "labels": labels, "skipped": [str(s) for s in result.skipped]}
