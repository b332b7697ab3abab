"""Judge backends: turn `JudgePrompt`s into choice log-probs or text.

- `LocalJudge`: any local causal LM (default: the embedded SmolLM2-135M-Instruct), batched,
  with the KV-cached sampler of `rlhfkit.generation`.
- `HTTPJudge`: any OpenAI-compatible endpoint (vLLM, llama.cpp server, Ollama, ...), either
  `/v1/completions` with `logprobs` or `/v1/chat/completions` with `logprobs`/`top_logprobs`;
  per-request timeout, retries with exponential back-off on timeouts, connection errors, 429 and
  5xx (the project's `OpenAIClient`, which the openai rollout backend uses too), and at most
  `concurrency` requests in flight.
- `CachedJudge`: wraps either with an on-disk SQLite cache of judgements, keyed by the backend's
  identity and the exact request, so a re-run (or a run that died half way) costs nothing twice.

A choice's log-prob is that of the *exact* string: for choices that are prefixes of others
("1" and "10") the probability of continuing into the longer one is taken out
(P("1") · (1 − P("0" | "1"))).
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, Sequence

from rlhfkit.data.chat import pad_token_id
from rlhfkit.feedback.judge import JudgePrompt
from rlhfkit.generation.openai_client import EndpointError, OpenAIClient
from rlhfkit.generation.sampling import SamplingParams, decode_responses, sample
from rlhfkit.models import load_policy, resolve_device, resolve_precision
from rlhfkit.models.loading import autocast_context, eos_token_ids, resolve_policy_path


class JudgeError(RuntimeError):
    """The judge could not answer (endpoint down, bad reply); the message says what happened."""


class JudgeBackend(Protocol):
    identity: str

    def choice_logprobs(self, prompts: Sequence[JudgePrompt], choices: Sequence[str]) -> list[list[float]]:
        """log P(choice | prompt) in nats for every prompt (rows) and choice (columns)."""
        ...

    def generate(self, prompts: Sequence[JudgePrompt], max_new_tokens: int, temperature: float = 0.0,
                 seeds: Sequence[int] | None = None) -> list[str]:
        """One continuation per prompt; temperature 0 = greedy."""
        ...


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _log1m(mass: float) -> float:
    """log(1 − mass), safe at mass ≈ 1."""
    return math.log1p(-min(mass, 1.0 - 1e-12))


# ---------------------------------------------------------------------------------------------
# Local causal LM


@contextmanager
def _fp32_output_head(model):
    """Within this context the model's output head (hidden state -> vocabulary logits) computes in
    float32 from its (possibly bf16) input, outside autocast; whatever the model does with the
    logits afterwards (soft-capping, scaling) then also runs in float32."""
    import torch
    import torch.nn.functional as F

    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        yield
        return

    def fp32_logits(module, args, output):
        with torch.autocast(args[0].device.type, enabled=False):
            bias = None if module.bias is None else module.bias.float()
            return F.linear(args[0].float(), module.weight.float(), bias)  # (B, T, V) float32

    handle = head.register_forward_hook(fp32_logits)
    try:
        yield
    finally:
        handle.remove()


class LocalJudge:
    """A local causal LM as judge. `chat`: wrap the request in the tokenizer's chat template
    (None: when it has one)."""

    def __init__(self, model, tokenizer, identity: str, chat: bool | None = None, batch_size: int = 8,
                 compute_dtype=None, seed: int = 0):
        import torch

        self.model = model
        self.tokenizer = tokenizer
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if chat and not has_template:
            raise ValueError("chat formatting requested but the judge's tokenizer has no chat template")
        self.chat = has_template if chat is None else chat
        self.batch_size = batch_size
        self.compute_dtype = compute_dtype or torch.float32
        self.seed = seed
        self.device = next(model.parameters()).device
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.pad_id = pad_token_id(tokenizer)
        self.identity = f"local:{identity}:{'chat' if self.chat else 'plain'}:{str(self.compute_dtype).removeprefix('torch.')}"
        self.description = self._describe(identity)

    def _describe(self, name: str) -> str:
        """What `rlhfkit label` prints: the model as the user named it, how it is prompted."""
        dtype = str(self.compute_dtype).removeprefix("torch.")
        return f"{name} (local, {'chat template' if self.chat else 'plain prompt'}, {dtype}, {self.device})"

    @classmethod
    def load(cls, name_or_path: str, device: str = "auto", precision: str = "auto", chat: bool | None = None,
             batch_size: int = 8, seed: int = 0) -> "LocalJudge":
        dev = resolve_device(device)
        dtype = resolve_precision(precision, dev)
        model, tokenizer = load_policy(name_or_path, device=dev)
        path, _ = resolve_policy_path(name_or_path)
        judge = cls(model, tokenizer, identity=path, chat=chat, batch_size=batch_size, compute_dtype=dtype, seed=seed)
        judge.description = judge._describe(name_or_path)
        return judge

    def render(self, prompt: JudgePrompt) -> str:
        if self.chat:
            head = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt.user}], tokenize=False, add_generation_prompt=True
            )
            return head + prompt.prefix
        return prompt.user + prompt.prefix

    def _encode(self, text: str) -> list[int]:
        # A chat-rendered text already holds its special tokens.
        return self.tokenizer(text, add_special_tokens=not self.chat)["input_ids"]

    def _continuation(self, text: str, base: list[int], choice: str) -> list[int]:
        """Token ids of `choice` as the model would produce them right after `text`."""
        full = self._encode(text + choice)
        if len(full) > len(base) and full[: len(base)] == base:
            return full[len(base):]
        return self.tokenizer(choice, add_special_tokens=False)["input_ids"]

    def _left_pad(self, sequences: list[list[int]]):
        import torch

        P = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), P), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(sequences), P, dtype=torch.long)
        for i, s in enumerate(sequences):
            ids[i, P - len(s):] = torch.tensor(s)
            mask[i, P - len(s):] = 1
        return ids.to(self.device), mask.to(self.device)

    def _last_logprobs(self, sequences: list[list[int]]):
        """log-softmax of the next-token logits after each sequence: (B, V) float32.

        The output head and the softmax run in float32 even when the model runs in bf16: bf16
        logits of magnitude ~16 are spaced 0.125 apart, so the "1"/"2" log-odds of different
        pairs would collapse onto the same few values (σ(−0.25) for many pairs)."""
        import torch

        ids, mask = self._left_pad(sequences)  # (B, P)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad(), autocast_context(self.device, self.compute_dtype), _fp32_output_head(self.model):
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1)
        return torch.log_softmax(out.logits[:, -1].float(), dim=-1).cpu()  # (B, V)

    def choice_logprobs(self, prompts: Sequence[JudgePrompt], choices: Sequence[str]) -> list[list[float]]:
        if not prompts:
            return []
        texts = [self.render(p) for p in prompts]
        bases = [self._encode(t) for t in texts]
        conts = [[self._continuation(t, b, c) for c in choices] for t, b in zip(texts, bases)]
        # Each node of the token trie of the choices (a prompt plus a partial choice) is one
        # forward pass; `needed[node]` are the next tokens whose log-probs we read there.
        needed: dict[tuple[int, tuple[int, ...]], set[int]] = defaultdict(set)
        for row, seqs in enumerate(conts):
            for seq in seqs:
                for k in range(len(seq)):
                    needed[(row, tuple(seq[:k]))].add(seq[k])
        nodes = sorted(needed, key=lambda n: len(bases[n[0]]) + len(n[1]))  # similar lengths batch together
        read: dict[tuple[int, tuple[int, ...]], dict[int, float]] = {}
        for batch in _chunks(nodes, self.batch_size):
            logp = self._last_logprobs([bases[r] + list(prefix) for r, prefix in batch])
            for node, dist in zip(batch, logp):
                read[node] = {t: float(dist[t]) for t in needed[node]}
        out = []
        for row, seqs in enumerate(conts):
            values = []
            for seq in seqs:
                lp = sum(read[(row, tuple(seq[:k]))][seq[k]] for k in range(len(seq)))
                node = (row, tuple(seq))
                if node in read:  # a longer choice continues this one: take that mass out
                    longer = {o[len(seq)] for o in seqs if len(o) > len(seq) and o[: len(seq)] == seq}
                    lp += _log1m(sum(math.exp(read[node][t]) for t in longer))
                values.append(lp)
            out.append(values)
        return out

    def generate(self, prompts: Sequence[JudgePrompt], max_new_tokens: int, temperature: float = 0.0,
                 seeds: Sequence[int] | None = None) -> list[str]:
        import torch

        if not prompts:
            return []
        params = SamplingParams(strategy="greedy" if temperature == 0 else "sample",
                                temperature=temperature or 1.0, max_new_tokens=max_new_tokens)
        encoded = [self._encode(self.render(p)) for p in prompts]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        texts: list[str] = [""] * len(encoded)
        for batch in _chunks(order, self.batch_size):
            ids, mask = self._left_pad([encoded[i] for i in batch])
            generator = None
            if temperature:
                batch_seed = self.seed * 1_000_003 + (seeds[batch[0]] if seeds is not None else 0) * 7919 + batch[0]
                generator = torch.Generator(device=self.device).manual_seed(batch_seed)
            with autocast_context(self.device, self.compute_dtype):
                out = sample(self.model, ids, mask, params, self.eos_ids, self.pad_id, generator)
            for i, text in zip(batch, decode_responses(self.tokenizer, out["response_ids"], out["response_mask"])):
                texts[i] = text
        return texts


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP endpoint


class HTTPJudge:
    """An OpenAI-compatible endpoint as judge.

    api="completions": POST {base_url}/completions with `logprobs=top_logprobs`, reading the
    first position's `top_logprobs`; a multi-token choice ("10") is walked token by token with
    further requests. api="chat": POST {base_url}/chat/completions with `logprobs=true`, the whole
    prompt (request + ending) as one user message; only single-token choices can be read there.
    A choice missing from the top-k gets the smallest log-prob shown (an upper bound on its own).
    """

    def __init__(self, base_url: str, model: str = "", api: str = "completions", api_key: str | None = None,
                 timeout: float = 60.0, retries: int = 3, concurrency: int = 4, top_logprobs: int = 20,
                 backoff: float = 0.5):
        if api not in ("completions", "chat"):
            raise ValueError(f"api must be 'completions' or 'chat', got {api!r}")
        self.model = model
        self.api = api
        self.concurrency = max(1, concurrency)  # requests in flight: the thread pools below
        self.top_logprobs = top_logprobs
        # the project's one OpenAI client (generation/openai_client.py): timeout, retries, back-off
        self._client = OpenAIClient(base_url, api_key=api_key, timeout=timeout, retries=retries, backoff=backoff)
        self.base_url = self._client.base_url
        self.identity = f"http:{self.base_url}:{model}:{api}:top{top_logprobs}"  # the cache key
        self.description = f"{self.base_url} ({api} API, model {model or '(server default)'})"

    @property
    def requests_sent(self) -> int:
        """Requests sent, retries included."""
        return self._client.requests_sent

    def close(self) -> None:
        """Nothing to release: each request opens its own connection."""

    def _post(self, path: str, payload: dict) -> dict:
        try:
            return self._client.request(path, payload)
        except EndpointError as err:
            raise JudgeError(str(err)) from None

    def _top(self, prompt: JudgePrompt, extra: str = "") -> dict[str, float]:
        """The judge's top next-token log-probs after `prompt` (+ `extra` already generated)."""
        if self.api == "completions":
            payload = {"model": self.model, "prompt": prompt.user + prompt.prefix + extra, "max_tokens": 1,
                       "temperature": 0.0, "logprobs": self.top_logprobs}
            reply = self._post("completions", payload)
            try:
                top = reply["choices"][0]["logprobs"]["top_logprobs"][0]
                return {str(k): float(v) for k, v in top.items()}
            except (KeyError, IndexError, TypeError, ValueError, AttributeError):
                raise JudgeError(f"{self.base_url}/completions: reply has no choices[0].logprobs.top_logprobs[0] "
                                 "(does the server support logprobs?)") from None
        payload = {"model": self.model, "messages": [{"role": "user", "content": prompt.user + prompt.prefix}],
                   "max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": self.top_logprobs}
        reply = self._post("chat/completions", payload)
        try:
            top = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
            return {str(t["token"]): float(t["logprob"]) for t in top}
        except (KeyError, IndexError, TypeError, ValueError):
            raise JudgeError(f"{self.base_url}/chat/completions: reply has no choices[0].logprobs.content[0]"
                             ".top_logprobs (does the server support logprobs?)") from None

    def _score_one(self, prompt: JudgePrompt, choices: Sequence[str]) -> list[float]:
        seen: dict[str, dict[str, float]] = {}

        def top(extra: str) -> dict[str, float]:
            if extra not in seen:
                seen[extra] = self._top(prompt, extra)
            return seen[extra]

        walkable = self.api == "completions"

        def stop(text: str) -> float:
            """log(1 − P(continuing into a longer choice)) after `text`."""
            longer = [c for c in choices if c != text and c.startswith(text)]
            if not longer or not walkable:
                return 0.0
            mass = sum(math.exp(lp) for tok, lp in top(text).items() if tok and any(c.startswith(text + tok) for c in longer))
            return _log1m(mass)

        def walk(choice: str, done: str) -> float:
            total = -math.inf
            for token, lp in top(done).items():
                piece = token.lstrip() if not done else token
                if not piece:
                    continue
                text = done + piece
                if text == choice:
                    total = float(_logaddexp(total, lp + stop(text)))
                elif walkable and choice.startswith(text):
                    total = float(_logaddexp(total, lp + walk(choice, text)))
            return total

        floor = min(top("").values()) if top("") else -100.0
        return [v if v > -math.inf else floor for v in (walk(c, "") for c in choices)]

    def choice_logprobs(self, prompts: Sequence[JudgePrompt], choices: Sequence[str]) -> list[list[float]]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda p: self._score_one(p, choices), prompts))

    def _generate_one(self, prompt: JudgePrompt, max_new_tokens: int, temperature: float, seed: int) -> str:
        if self.api == "completions":
            payload = {"model": self.model, "prompt": prompt.user + prompt.prefix, "max_tokens": max_new_tokens,
                       "temperature": temperature, "seed": seed}
            reply = self._post("completions", payload)
            path = ("choices", 0, "text")
        else:
            payload = {"model": self.model, "messages": [{"role": "user", "content": prompt.user + prompt.prefix}],
                       "max_tokens": max_new_tokens, "temperature": temperature, "seed": seed}
            reply = self._post("chat/completions", payload)
            path = ("choices", 0, "message", "content")
        try:
            value = reply
            for key in path:
                value = value[key]
            return str(value).strip()
        except (KeyError, IndexError, TypeError):
            raise JudgeError(f"{self.base_url}: reply has no {'.'.join(map(str, path))}") from None

    def generate(self, prompts: Sequence[JudgePrompt], max_new_tokens: int, temperature: float = 0.0,
                 seeds: Sequence[int] | None = None) -> list[str]:
        seeds = list(seeds) if seeds is not None else [0] * len(prompts)
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda a: self._generate_one(a[0], max_new_tokens, temperature, a[1]),
                                 zip(prompts, seeds)))


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    top = max(a, b)
    return top + math.log(math.exp(a - top) + math.exp(b - top))


# ---------------------------------------------------------------------------------------------
# On-disk cache


class JudgementCache:
    """key → JSON value in one SQLite file (WAL, safe to share between processes)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS judgements (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.commit()

    def get_many(self, keys: Sequence[str]) -> dict[str, object]:
        found: dict[str, object] = {}
        with self._lock:
            for batch in _chunks(list(keys), 500):
                marks = ",".join("?" * len(batch))
                for key, value in self._db.execute(f"SELECT key, value FROM judgements WHERE key IN ({marks})", batch):
                    found[key] = json.loads(value)
        return found

    def put_many(self, items: dict[str, object]) -> None:
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO judgements (key, value) VALUES (?, ?)",
                                 [(k, json.dumps(v)) for k, v in items.items()])
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedJudge:
    """A backend behind a `JudgementCache`; `hits` / `misses` count requests answered from / past it."""

    def __init__(self, backend: JudgeBackend, cache: JudgementCache):
        self.backend = backend
        self.cache = cache
        self.identity = backend.identity
        self.description = getattr(backend, "description", backend.identity) + f", cached in {cache.path}"
        self.hits = 0
        self.misses = 0

    def _key(self, *parts) -> str:
        return hashlib.sha256(json.dumps([self.identity, *parts], ensure_ascii=False).encode()).hexdigest()

    def _cached(self, keys: list[str], compute) -> list:
        found = self.cache.get_many(keys)
        missing = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            fresh = compute(missing)
            new = {keys[i]: value for i, value in zip(missing, fresh)}
            self.cache.put_many(new)
            found.update(new)
        return [found[k] for k in keys]

    def choice_logprobs(self, prompts: Sequence[JudgePrompt], choices: Sequence[str]) -> list[list[float]]:
        keys = [self._key("choices", p.user, p.prefix, list(choices)) for p in prompts]
        return self._cached(keys, lambda idx: self.backend.choice_logprobs([prompts[i] for i in idx], choices))

    def generate(self, prompts: Sequence[JudgePrompt], max_new_tokens: int, temperature: float = 0.0,
                 seeds: Sequence[int] | None = None) -> list[str]:
        seeds = list(seeds) if seeds is not None else [0] * len(prompts)
        if temperature == 0:
            seeds = [0] * len(prompts)  # greedy text does not depend on the seed
        keys = [self._key("generate", p.user, p.prefix, max_new_tokens, temperature, s) for p, s in zip(prompts, seeds)]
        return self._cached(keys, lambda idx: self.backend.generate(
            [prompts[i] for i in idx], max_new_tokens, temperature, [seeds[i] for i in idx]))


def load_judge(spec: str, *, model: str = "", api: str = "completions", api_key: str | None = None,
               timeout: float = 60.0, retries: int = 3, concurrency: int = 4, device: str = "auto",
               precision: str = "auto", chat: bool | None = None, batch_size: int = 8, seed: int = 0,
               cache: str | Path | None = None) -> JudgeBackend:
    """`spec`: an http(s):// base URL of an OpenAI-compatible API (e.g. http://127.0.0.1:8000/v1),
    or a local model (the embedded default's name, a folder, an HF id, a .gguf file).
    `cache`: a SQLite file for cached judgements, or None for no cache."""
    backend: JudgeBackend
    if spec.startswith(("http://", "https://")):
        backend = HTTPJudge(spec, model=model, api=api, api_key=api_key, timeout=timeout, retries=retries,
                            concurrency=concurrency)
    else:
        backend = LocalJudge.load(spec, device=device, precision=precision, chat=chat, batch_size=batch_size, seed=seed)
    return CachedJudge(backend, JudgementCache(cache)) if cache else backend
