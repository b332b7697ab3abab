"""Configs of `rlhfkit label` and `rlhfkit feedback ...` (no torch imports here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from rlhfkit.config import (
    ChatOptions,
    ComputeOptions,
    ConfigError,
    SeedOptions,
    SkipInvalidOptions,
)

TASK_CHOICES = Literal["auto", "pairwise", "ranking", "rating", "thumbs", "rewrite", "demonstration"]


@dataclass
class FeedbackDBOptions:
    """The feedback database."""

    db: str = "feedback.sqlite"
    """the feedback database (an SQLite file; serve and import create it if missing)"""


@dataclass
class LabelConfig(ChatOptions, SkipInvalidOptions, ComputeOptions, SeedOptions):
    """Label pairs (or rate responses) with an AI judge (RLAIF)."""

    help_terms: ClassVar[dict[str, str]] = {
        "models": "a local judge", "chat_text": "a local judge's requests",
        "seeded": "the order each pair is shown in, and rationale sampling",
    }
    limits: ClassVar[dict[str, str]] = {"self_consistency": ">= 0", "temperature": "> 0", "max_rationale_tokens": ">= 1",
                                        "batch_size": ">= 1", "limit": ">= 0", "timeout": "> 0", "retries": ">= 0",
                                        "concurrency": ">= 1"}

    pairs: str = ""
    """input file: pairwise rows (prompt, chosen, rejected[, label]: the label is taken as gold),
    rows with prompt + responses [a, b], or `rlhfkit generate` output (prompt, response; two rows per
    prompt). With --mode rating: rows with prompt + response"""
    output: str = ""
    """where to write the soft-labelled pairs (default: ai_labels.jsonl) or the ratings (default: ai_ratings.jsonl)"""
    overwrite: bool = False
    """replace an existing --output file"""
    mode: Literal["pairwise", "rating"] = "pairwise"
    """pairwise: soft preference labels; rating: expected 1-10 rating per response (direct RLAIF)"""
    judge: str = "smollm2-135m-instruct"
    """a local causal LM (the embedded default, a folder, an HF id, a .gguf file) or the base URL of an
    OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1"""
    judge_model: str = ""
    """model name sent to an HTTP judge"""
    api: Literal["completions", "chat"] = "completions"
    """HTTP judge: /completions with logprobs (multi-token choices supported) or /chat/completions"""
    api_key_env: str = "OPENAI_API_KEY"
    """environment variable holding the HTTP judge's API key (unset: no key sent)"""
    preamble: str = "helpful"
    """built-in preamble (helpful, positive) or a text file with your own"""
    examples: str = ""
    """optional few-shot examples: a pairwise file (prompt, chosen, rejected) shown before each pair"""
    debias: Literal["none", "swap"] = "swap"
    """swap: judge both orders and average (removes position bias)"""
    cot: bool = False
    """chain of thought: a greedy rationale first, then score 1/2 after it"""
    self_consistency: int = 0
    """if > 0: sample this many rationales at --temperature and average their labels"""
    temperature: float = 1.0
    """sampling temperature of the self-consistency rationales"""
    max_rationale_tokens: int = 64
    """longest rationale (CoT and self-consistency)"""
    batch_size: int = 16
    """local judge: prompts per forward pass"""
    limit: int = 0
    """label only the first N pairs (0: all)"""
    timeout: float = 60.0
    """HTTP judge: seconds to wait for one reply"""
    retries: int = 3
    """HTTP judge: retries after a timeout, connection error, 429 or 5xx (exponential back-off)"""
    concurrency: int = 4
    """HTTP judge: requests in flight at once"""
    cache: str = "auto"
    """SQLite file of cached judgements ('auto': $RLHFKIT_CACHE/judgements.sqlite, 'off': no cache)"""
    report: str = ""
    """also write the alignment table and settings as JSON to this file"""

    def __post_init__(self):
        if not self.pairs:
            raise ConfigError("--pairs is required: a file of pairs to label (or of responses, with --mode rating)")
        if self.self_consistency < 0 or self.limit < 0:
            raise ConfigError("--self-consistency and --limit must be >= 0")
        if self.self_consistency and self.temperature <= 0:
            raise ConfigError("--self-consistency samples rationales: --temperature must be > 0")
        if self.max_rationale_tokens < 1 or self.batch_size < 1:
            raise ConfigError("--max-rationale-tokens and --batch-size must be >= 1")
        if self.timeout <= 0 or self.retries < 0 or self.concurrency < 1:
            raise ConfigError("--timeout must be > 0, --retries >= 0 and --concurrency >= 1")
        if self.mode == "rating" and (self.cot or self.self_consistency):
            raise ConfigError("--cot and --self-consistency apply to --mode pairwise only")
        if not self.output:
            self.output = "ai_ratings.jsonl" if self.mode == "rating" else "ai_labels.jsonl"


@dataclass
class ServeConfig(FeedbackDBOptions):
    """Serve the feedback page and its JSON API."""

    limits: ClassVar[dict[str, str]] = {"port": "[0, 65535]", "overlap": ">= 0"}
    host: str = "127.0.0.1"
    """address to listen on (0.0.0.0: every interface — annotators then reach it over the network)"""
    port: int = 8000
    """TCP port"""
    overlap: int = 0
    """labels wanted per item: each item is shown to annotators until this many have labelled it
    (0: keep the database's setting, 1 for a new one)"""
    access_log: bool = False
    """log one line per request (address, method, path, status) on stderr; tokens never appear in it"""

    def __post_init__(self):
        if self.overlap < 0:
            raise ConfigError("--overlap must be at least 1 (or 0 to keep the database's setting)")
        if not 0 <= self.port <= 65535:
            raise ConfigError("--port must lie in 0..65535")


@dataclass
class ImportConfig(FeedbackDBOptions, SkipInvalidOptions):
    """Import items (a prompt and its candidate responses) to label."""

    file: str = ""
    """rows with prompt + responses, prompt + chosen/rejected, `rlhfkit generate` output, or prompts alone"""
    task: TASK_CHOICES = "auto"
    """what annotators do with each item (auto: 0 responses demonstration, 1 rating, 2 pairwise, 3+ ranking)"""
    guidelines: str = ""
    """a UTF-8 text file of labelling guidelines, shown on the page above these items (importing the
    same rows again with another file replaces them)"""

    MAX_GUIDELINES: ClassVar[int] = 20_000

    def __post_init__(self):
        if not self.file:
            raise ConfigError("feedback import: give the FILE of items (or `file:` in --config)")
        if self.guidelines:
            self.guidelines_text()  # a missing or unreadable file fails here, before anything is imported

    def guidelines_text(self) -> str | None:
        """The guidelines file's text (None when no file is named)."""
        if not self.guidelines:
            return None
        from pathlib import Path

        path = Path(self.guidelines)
        if not path.is_file():
            raise ConfigError(f"--guidelines: {path}: no such file")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as err:
            raise ConfigError(f"--guidelines: {path}: not UTF-8 text (byte {err.start})") from None
        if not text.strip():
            raise ConfigError(f"--guidelines: {path}: the file is empty")
        if len(text) > self.MAX_GUIDELINES:
            raise ConfigError(f"--guidelines: {path}: {len(text)} characters; at most {self.MAX_GUIDELINES} are shown")
        return text.strip()


@dataclass
class AnnotatorConfig(FeedbackDBOptions):
    """Create an annotator (or issue a new token) and print the token and sign-in link."""

    name: str = ""
    """the annotator's name (unique)"""
    admin: bool = False
    """may also see /admin and import/export through the API"""
    rotate: bool = False
    """issue a new token for an existing annotator"""
    url: str = "http://127.0.0.1:8000"
    """server address used in the printed link"""

    def __post_init__(self):
        if not self.name:
            raise ConfigError("feedback add-annotator: give the annotator's NAME (or `name:` in --config)")


@dataclass
class StatsConfig(FeedbackDBOptions):
    """Progress per annotator and agreement per task."""


@dataclass
class ExportConfig(FeedbackDBOptions):
    """Export labels as training data that `rlhfkit rm` / `dpo` / `sft` read."""
    kind: Literal["pairwise", "ranking", "rating", "thumbs", "rewrite", "sft"] = "pairwise"
    """record kind to write (sft = written demonstrations)"""
    output: str = ""
    """output JSONL file (default: KIND.jsonl)"""
    aggregate: Literal["each", "mean"] = "each"
    """each: one row per label; mean: one row per item (pairwise: share of votes as a soft label,
    rating: mean, ranking: Borda count, thumbs: majority)"""
