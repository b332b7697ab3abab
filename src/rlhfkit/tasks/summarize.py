"""The summarize task: summarise a real, human-written passage in one sentence (the RLAIF
paper's task, Lee et al. 2023, in miniature).

Source: the docstrings of the Python standard library of the interpreter that runs rlhfkit
(read with `ast` from its source files, nothing imported or downloaded). A docstring's first
line is its author's own one-sentence summary of the paragraphs that follow, so the
reference is the first line and the passage is the rest (PEP 257). The Python source is
© Python Software Foundation, under the PSF License Agreement (Python Software Foundation
License Version 2, https://docs.python.org/3/license.html).

Gold: ROUGE-L F-measure against the reference (rouge-score, Porter stemmer) times a length
penalty that only bites past twice the reference's length: `exp(1 − n / (2·m))` for a summary
of n words and a reference of m words when n > 2m, else 1 (the mirror of BLEU's brevity
penalty) — so a policy cannot buy recall by copying the passage.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import sys
import sysconfig
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from rlhfkit.tasks.base import Task

# A fixed list of pure-Python standard-library modules with prose docstrings (a module missing
# from some Python version is skipped).
MODULES = """argparse asyncio/base_events asyncio/events asyncio/streams asyncio/tasks bdb bz2 calendar cmd codecs
collections/__init__ configparser contextlib csv dataclasses datetime difflib email/message email/header email/utils
fractions ftplib functools gettext glob gzip heapq hmac http/client http/cookiejar http/server imaplib inspect
ipaddress json/__init__ json/decoder json/encoder locale logging/__init__ logging/handlers lzma mailbox mimetypes
multiprocessing/pool netrc optparse os pathlib pdb pickle pkgutil platform plistlib poplib pprint pydoc queue
random reprlib sched selectors shlex shutil smtplib socket socketserver ssl statistics string subprocess tarfile
tempfile textwrap threading timeit tokenize trace traceback typing unittest/case urllib/parse urllib/request uuid
warnings weakref wave xml/dom/minidom zipfile/__init__ zipfile zipimport""".split()
INSTRUCTION = "Summarise this description of a Python function or class in one sentence."
LENGTH_FACTOR = 2.0
_CODE = re.compile(r"[{}\[\]=<>|`*]|::")


def _pair(docstring: str) -> tuple[str, str] | None:
    """(reference, passage) of a docstring written as PEP 257 asks, or None."""
    summary, sep, body = docstring.partition("\n\n")
    if not sep or ">>>" in body:
        return None
    lines = [line for line in body.splitlines() if line.strip()]
    if any(line.startswith((" ", "\t", "-", "*")) for line in lines):  # lists, tables, code
        return None
    summary, body = " ".join(summary.split()), " ".join(body.split())
    if not (5 <= len(summary.split()) <= 20 and summary.endswith(".") and 25 <= len(body.split()) <= 150):
        return None
    if _CODE.search(summary + body):
        return None
    return summary, body


def docstring_rows(stdlib: Path | None = None) -> list[dict]:
    """Every usable docstring of MODULES: {"id": "module:qualname", "prompt", "reference", "passage"}.

    A summary or a passage seen before is skipped (the first one kept): two rows with one prompt
    and two references would leave a completion's reference ambiguous."""
    root = Path(stdlib or sysconfig.get_paths()["stdlib"])
    rows, seen, seen_passages = [], set(), set()
    for module in MODULES:
        path = root / f"{module}.py"
        if not path.is_file():
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            pair = _pair(ast.get_docstring(node) or "")
            if pair is None or pair[0] in seen or pair[1] in seen_passages:
                continue
            seen.add(pair[0])
            seen_passages.add(pair[1])
            reference, passage = pair
            rows.append({"id": f"{module.replace('/', '.')}:{node.name}", "reference": reference, "passage": passage,
                         "prompt": f"{INSTRUCTION}\n\n{passage}"})
    return rows


@lru_cache(maxsize=1)
def cached_docstring_rows() -> tuple[dict, ...]:
    """`docstring_rows()` of this Python, kept in $RLHFKIT_CACHE after the first read (~2 s)."""
    version = ".".join(map(str, sys.version_info[:3]))
    root = Path(os.environ.get("RLHFKIT_CACHE", Path.home() / ".cache" / "rlhfkit")).expanduser()
    path = root / "tasks" / f"summarize-v2-python{version}.json"
    if path.is_file():
        return tuple(json.loads(path.read_text()))
    rows = docstring_rows()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows))
    tmp.replace(path)
    return tuple(rows)


@lru_cache(maxsize=1)
def _rouge_l():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def length_penalty(n_words: int, reference_words: int, factor: float = LENGTH_FACTOR) -> float:
    """1 up to `factor` × the reference's length, then exp(1 − n / (factor·m))."""
    limit = factor * max(reference_words, 1)
    return 1.0 if n_words <= limit else math.exp(1.0 - n_words / limit)


def rouge_l_with_length_penalty(prompts: Sequence[str], completions: Sequence[str], reference: Sequence[str],
                                **columns) -> list[float]:
    """ROUGE-L F of each completion against its reference, times `length_penalty`, in [0, 1]."""
    scorer = _rouge_l()
    out = []
    for completion, ref in zip(completions, reference):
        text = completion.strip()
        f = scorer.score(ref, text)["rougeL"].fmeasure if text else 0.0
        out.append(f * length_penalty(len(text.split()), len(ref.split())))
    return out


SUMMARIZE = Task(
    name="summarize",
    description="summarise a standard-library docstring's body in one sentence; gold = ROUGE-L F vs its first line × length penalty",
    make_rows=lambda: [dict(r) for r in cached_docstring_rows()],
    scorer=rouge_l_with_length_penalty,
    chat=True,
    max_new_tokens=40,
    reference_column="reference",
    metrics=("rouge", "bleu", "meteor", "diversity"),
    source="docstrings of the Python standard library (first line = reference, the rest = passage); "
    "© Python Software Foundation, PSF License Agreement",
    needs=("reference",),
)
