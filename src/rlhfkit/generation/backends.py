"""Rollout backends: where responses are sampled, behind one interface (`--rollout-backend`).

- `HFBackend` (hf): the project's own KV-cached sampler (sampling.py) on a model in this process.
- `OpenAIBackend` (openai): any OpenAI-compatible server (`rlhfkit serve`, `vllm serve`, llama.cpp)
  through `OpenAIClient`. Text prompts go to /v1/completions (or, with the chat template, one
  conversation per request to /v1/chat/completions); RL sends token ids as the prompt and reads
  the sampled token ids back (`return_tokens_as_token_ids`, a vLLM extension `rlhfkit serve`
  speaks) with their log-probs, and pushes its weights after each update to POST
  /v1/load_weights (a folder both sides can read) — a server that cannot reload is a clear error.
- `VLLMBackend` (vllm): a vLLM engine colocated in this process (optional, CUDA only), returning
  raw log-probs (`logprobs_mode="raw_logprobs"`: temperature 1, before top-k/top-p, as our
  trainer's); after each update the merged weights are loaded into its model runner
  (`load_weights`) and its prefix cache reset.

Every backend answers `responses(prompts, params, chat, ...)` with rows {prompt, response,
tokens, logprob, finished} (what `rlhfkit generate` writes), `rollout(...)` with a `Rollout` for
RL (sampler log-probs in `logprobs`), and `sync_weights(policy, tokenizer)`.
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, Sequence

import torch

from rlhfkit.config import ConfigError
from rlhfkit.data.chat import encode_prompts, pad_token_id
from rlhfkit.generation.openai_client import EndpointError, OpenAIClient
from rlhfkit.generation.sampling import SamplingParams, decode_responses, generate, generate_batched
from rlhfkit.models.loading import resolve_policy_path
from rlhfkit.models.lora import merged_state_dict, save_merged
from rlhfkit.types import Rollout


class RolloutBackend(Protocol):
    name: str

    def responses(self, prompts: Sequence[str], params: SamplingParams, chat: bool | None, batch_size: int = 32,
                  progress: str | None = None, seed: int = 0) -> list[dict]:
        """One row {prompt, response, tokens, logprob (summed, nats), finished} per prompt, in order."""
        ...

    def rollout(self, tokenizer, prompts: Sequence[str], params: SamplingParams, chat: bool | None,
                seed: int = 0) -> Rollout:
        """One sampled response per prompt as a `Rollout` on the tokenizer's ids."""
        ...

    def sync_weights(self, policy, tokenizer) -> None:
        """Make the backend sample from `policy`'s current weights."""
        ...


def rows_from_rollouts(rollouts: Sequence[Rollout]) -> list[dict]:
    """One row per response: prompt, response, token count, summed log-prob (nats) and whether
    it ended with EOS."""
    rows: list[dict] = []
    for ro in rollouts:
        lengths = ro.response_mask.sum(1).long().tolist()
        total_lp = (ro.logprobs * ro.response_mask).sum(1).tolist()
        for prompt, response, n_tok, lp, fin in zip(ro.prompts, ro.responses, lengths, total_lp, ro.finished.tolist()):
            rows.append({"prompt": prompt, "response": response, "tokens": n_tok, "logprob": lp, "finished": fin})
    return rows


class HFBackend:
    """The project's sampler on `model` in this process (what every command did before backends)."""

    name = "hf"

    def __init__(self, model, tokenizer, compute_dtype: torch.dtype = torch.float32,
                 generator: torch.Generator | None = None):
        self.model, self.tokenizer, self.compute_dtype, self.generator = model, tokenizer, compute_dtype, generator

    def responses(self, prompts, params, chat, batch_size=32, progress=None, seed=0) -> list[dict]:
        kwargs = {"generator": self.generator} if params.strategy != "beam" else {}
        return rows_from_rollouts(generate_batched(self.model, self.tokenizer, list(prompts), params, batch_size=batch_size,
                                                   progress=progress, chat=chat, compute_dtype=self.compute_dtype, **kwargs))

    def rollout(self, tokenizer, prompts, params, chat, seed=0) -> Rollout:
        return generate(self.model, tokenizer, list(prompts), params, chat=chat, generator=self.generator,
                        compute_dtype=self.compute_dtype)

    def sync_weights(self, policy, tokenizer) -> None:
        self.model = policy


def sampling_fields(params: SamplingParams) -> dict:
    """The OpenAI request fields of our sampling parameters (greedy = temperature 0; top_k is a
    vLLM extension, sent only when used)."""
    if params.strategy == "beam":
        raise ConfigError("beam search is not available through --rollout-backend openai/vllm: use --rollout-backend hf")
    if params.strategy == "greedy":
        return {"temperature": 0.0, "max_tokens": params.max_new_tokens}
    fields = {"temperature": params.temperature, "max_tokens": params.max_new_tokens,
              "top_p": params.top_p if params.strategy in ("top_p", "sample") else 1.0}
    top_k = params.top_k if params.strategy in ("top_k", "sample") else 0
    if top_k:
        fields["top_k"] = top_k
    return fields


def _token_id(token: str, where: str) -> int:
    if not token.startswith("token_id:"):
        raise EndpointError(f"{where}: the server returned tokens as text ({token!r}), not as ids: RL needs "
                            "return_tokens_as_token_ids (rlhfkit serve and vLLM support it)")
    return int(token.removeprefix("token_id:"))


class OpenAIBackend:
    """An OpenAI-compatible server at `base_url`; `model` is the name sent with every request.
    `concurrency` requests are in flight at once (chat: one conversation per request)."""

    name = "openai"

    def __init__(self, base_url: str, model: str = "", timeout: float = 300.0, concurrency: int = 4,
                 retries: int = 2, device: torch.device | str = "cpu"):
        self.client = OpenAIClient(base_url, timeout=timeout, retries=retries)
        self.base_url, self.model, self.concurrency = self.client.base_url, model, max(1, concurrency)
        self.device = device  # where `rollout` puts its tensors (the trainer's device)

    def _map(self, fn, items: list) -> list:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(fn, items))

    def _completions(self, prompts: list, params: SamplingParams, seed: int, as_ids: bool = False) -> list[dict]:
        payload = {"model": self.model, "prompt": prompts, "n": 1, "seed": seed, "logprobs": 0,
                   **sampling_fields(params), **({"return_tokens_as_token_ids": True} if as_ids else {})}
        reply = self.client.request("completions", payload)
        choices = sorted(reply.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != len(prompts):
            raise EndpointError(f"{self.base_url}/completions: {len(choices)} choices for {len(prompts)} prompts")
        return choices

    def _chat(self, prompt: str, params: SamplingParams, seed: int) -> dict:
        payload = {"model": self.model, "messages": [{"role": "user", "content": prompt}], "n": 1, "seed": seed,
                   "logprobs": True, **sampling_fields(params)}
        choices = self.client.request("chat/completions", payload).get("choices") or []
        if not choices:
            raise EndpointError(f"{self.base_url}/chat/completions: the reply has no choices")
        return choices[0]

    def responses(self, prompts, params, chat, batch_size=32, progress=None, seed=0) -> list[dict]:
        """chat True or None (the server's model is not here to ask for its template): the chat
        API, one conversation per request; chat False: completions, `batch_size` prompts a request."""
        prompts = list(prompts)
        rows = []
        try:
            if chat is False:
                batches = [prompts[i : i + batch_size] for i in range(0, len(prompts), batch_size)]
                replies = self._map(lambda ib: self._completions(ib[1], params, seed + ib[0]), list(enumerate(batches)))
                for batch, choices in zip(batches, replies):
                    for prompt, choice in zip(batch, choices):
                        logprobs = (choice.get("logprobs") or {}).get("token_logprobs") or []
                        rows.append(_row(prompt, choice.get("text", ""), logprobs, choice.get("finish_reason")))
            else:
                choices = self._map(lambda ip: self._chat(ip[1], params, seed + ip[0]), list(enumerate(prompts)))
                for prompt, choice in zip(prompts, choices):
                    content = ((choice.get("logprobs") or {}).get("content")) or []
                    rows.append(_row(prompt, (choice.get("message") or {}).get("content") or "",
                                     [c["logprob"] for c in content], choice.get("finish_reason")))
        except (KeyError, TypeError, AttributeError) as err:
            raise EndpointError(f"{self.base_url}: unexpected reply shape ({type(err).__name__}: {err})") from None
        return rows

    def rollout(self, tokenizer, prompts, params, chat, seed=0) -> Rollout:
        """Prompts encoded here (the trainer's own ids), sent as token ids; the sampled ids and their
        log-probs come back."""
        prompt_ids, prompt_mask = encode_prompts(tokenizer, list(prompts), chat, device=self.device)
        id_lists = [row[mask > 0].tolist() for row, mask in zip(prompt_ids, prompt_mask)]
        choices = self._completions(id_lists, params, seed, as_ids=True)
        where = f"{self.base_url}/completions"
        sampled = []
        for choice in choices:
            logprobs = choice.get("logprobs") or {}
            tokens = [_token_id(t, where) for t in logprobs.get("tokens") or []]
            sampled.append((tokens, logprobs.get("token_logprobs") or [], choice.get("finish_reason") == "stop"))
        return _rollout(tokenizer, list(prompts), prompt_ids, prompt_mask, sampled)

    def sync_weights(self, policy, tokenizer) -> None:
        """Save the policy (LoRA merged in) to a temporary folder and ask the server to load it."""
        with tempfile.TemporaryDirectory(prefix="rlhfkit-weights-") as folder:
            save_merged(policy, tokenizer, folder)
            try:
                self.client.request("load_weights", {"path": folder})
            except EndpointError as err:
                if "HTTP 404" in str(err) or "HTTP 405" in str(err):
                    raise EndpointError(
                        f"the server at {self.base_url} cannot reload weights (POST /v1/load_weights: {err}); RL with "
                        "--rollout-backend openai needs one that can, such as `rlhfkit serve` on this machine") from None
                raise


def _row(prompt: str, text: str, logprobs: list, finish_reason) -> dict:
    return {"prompt": prompt, "response": text.strip(), "tokens": len(logprobs),
            "logprob": float(sum(lp for lp in logprobs if lp is not None)), "finished": finish_reason == "stop"}


def _rollout(tokenizer, prompts: list[str], prompt_ids, prompt_mask, sampled: list[tuple[list[int], list[float], bool]]) -> Rollout:
    """A `Rollout` from (token ids, log-probs, finished) per prompt: right-padded (B, T) tensors."""
    if any(len(tokens) != len(lps) for tokens, lps, _ in sampled):
        raise EndpointError("the server returned a different number of tokens and log-probs")
    B, T = len(sampled), max(1, max(len(tokens) for tokens, _, _ in sampled))
    response_ids = torch.full((B, T), pad_token_id(tokenizer), dtype=torch.long)
    response_mask = torch.zeros(B, T)
    logprobs = torch.zeros(B, T)
    for b, (tokens, lps, _) in enumerate(sampled):
        response_ids[b, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        response_mask[b, : len(tokens)] = 1.0
        logprobs[b, : len(tokens)] = torch.tensor([float(x) for x in lps])
    device = prompt_ids.device
    response_ids, response_mask, logprobs = response_ids.to(device), response_mask.to(device), logprobs.to(device)
    return Rollout(prompt_ids=prompt_ids, prompt_mask=prompt_mask, response_ids=response_ids, response_mask=response_mask,
                   logprobs=logprobs, prompts=prompts, responses=decode_responses(tokenizer, response_ids, response_mask),
                   finished=torch.tensor([f for _, _, f in sampled], device=device))


def require_vllm():
    """The vllm module, or a ConfigError saying why it cannot run here."""
    try:
        # optional and heavy: imported only when --rollout-backend vllm is chosen
        import vllm
    except ImportError:
        raise ConfigError("--rollout-backend vllm: vllm is not installed (pip install vllm, on a machine with a CUDA "
                          "GPU); use --rollout-backend hf, or openai with a vLLM server") from None
    if not torch.cuda.is_available():
        raise ConfigError("--rollout-backend vllm needs a CUDA GPU and none is visible here; use --rollout-backend hf, "
                          "or openai with a vLLM server elsewhere")
    return vllm


class VLLMBackend:
    """A vLLM engine in this process (GPU). Log-probs are raw (temperature 1, before truncation),
    as the trainer computes them; `sync_weights` loads the merged policy into the engine's model
    and resets its prefix cache (the cached KV blocks were computed with the old weights)."""

    name = "vllm"

    def __init__(self, model_path: str, tokenizer, gpu_memory_utilization: float = 0.3, seed: int = 0,
                 dtype: str = "auto", device: torch.device | str = "cuda"):
        vllm = require_vllm()
        # the engine in this process, so that `sync_weights` reaches its model (as TRL's colocate mode)
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        self.vllm = vllm
        self.llm = vllm.LLM(model=model_path, gpu_memory_utilization=gpu_memory_utilization, seed=seed, dtype=dtype,
                            logprobs_mode="raw_logprobs", enable_prefix_caching=True)
        self.tokenizer, self.device = tokenizer, device

    def _params(self, params: SamplingParams, seed: int):
        fields = sampling_fields(params)
        return self.vllm.SamplingParams(n=1, temperature=fields["temperature"], top_p=fields.get("top_p", 1.0),
                                        top_k=fields.get("top_k", -1) or -1, max_tokens=fields["max_tokens"],
                                        logprobs=0, seed=seed)

    def _sample(self, id_lists: list[list[int]], params: SamplingParams, seed: int) -> list[tuple[list[int], list[float], bool]]:
        prompts = [{"prompt_token_ids": ids} for ids in id_lists]
        outputs = self.llm.generate(prompts, self._params(params, seed), use_tqdm=False)
        sampled = []
        for out in outputs:
            completion = out.outputs[0]
            tokens = list(completion.token_ids)
            lps = [step[token].logprob for step, token in zip(completion.logprobs, tokens)]
            sampled.append((tokens, lps, completion.finish_reason == "stop"))
        return sampled

    def rollout(self, tokenizer, prompts, params, chat, seed=0) -> Rollout:
        prompt_ids, prompt_mask = encode_prompts(tokenizer, list(prompts), chat, device=self.device)
        id_lists = [row[mask > 0].tolist() for row, mask in zip(prompt_ids, prompt_mask)]
        return _rollout(tokenizer, list(prompts), prompt_ids, prompt_mask, self._sample(id_lists, params, seed))

    def responses(self, prompts, params, chat, batch_size=32, progress=None, seed=0) -> list[dict]:
        return rows_from_rollouts([self.rollout(self.tokenizer, prompts, params, chat, seed)])

    def sync_weights(self, policy, tokenizer) -> None:
        # TRL's colocated path: the engine's model in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0)
        engine_model = self.llm.llm_engine.model_executor.driver_worker.worker.model_runner.model
        engine_model.load_weights(weights=list(merged_state_dict(policy).items()))
        self.llm.reset_prefix_cache()


def make_backend(options, model_name: str, tokenizer=None, model=None, compute_dtype: torch.dtype = torch.float32,
                 generator: torch.Generator | None = None, device: torch.device | str = "cpu", seed: int = 0):
    """The backend `options` (a `RolloutBackendOptions`) names. hf samples `model` here; openai
    sends `model_name` to --base-url; vllm loads `model_name` (a local folder or HF id)."""
    kind = options.rollout_backend
    if kind == "openai":
        return OpenAIBackend(options.base_url, model_name, timeout=options.request_timeout, device=device)
    if kind == "vllm":
        path, _ = resolve_policy_path(model_name)
        return VLLMBackend(path, tokenizer, options.vllm_gpu_memory_utilization, seed, device=device)
    return HFBackend(model, tokenizer, compute_dtype, generator)
