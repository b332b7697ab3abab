"""`rlhfkit serve`: an OpenAI-compatible HTTP server for a local model, on the project's sampler.

    GET  /v1/models             the served model
    POST /v1/completions        prompt: text, token ids, or a list of either; max_tokens, temperature,
                                top_p, top_k, n, seed, logprobs, stop, return_tokens_as_token_ids
    POST /v1/chat/completions   messages through the tokenizer's chat template; logprobs, top_logprobs
    POST /v1/load_weights       {"path": FOLDER}: serve the weights saved there from now on (RL pushes
                                its policy here after each update)
    GET  /health

Log-probs are the model's own (temperature 1, before top-k/top-p truncation: vLLM's
`logprobs_mode="raw_logprobs"`), computed by one forward pass over prompt + completion, so they are
what a trainer's forward gives for the same tokens. Completions list every sampled token, the EOS
included (its text is ""); the text leaves special tokens out. Errors come in OpenAI's shape,
{"error": {"message", "type", "param", "code"}}.

The standard library's threaded HTTP server: one thread per connection, one batch on the model at
a time (a lock), Nagle's algorithm off on every connection (as the feedback server does), so a
reply is not held back ~40 ms for the client's delayed ACK. No authentication: it listens on
127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch

from rlhfkit.config import ConfigError
from rlhfkit.data.chat import pad_token_id
from rlhfkit.generation.config import ServeConfig
from rlhfkit.generation.sampling import SamplingParams, sample
from rlhfkit.models import load_policy, resolve_device, resolve_precision
from rlhfkit.models.loading import autocast_context, eos_token_ids, resolve_policy_path

MAX_LOGPROBS = 20  # OpenAI's limit on logprobs / top_logprobs


class RequestError(Exception):
    """A request the server refuses: becomes an OpenAI-style error reply with `status`."""

    def __init__(self, message: str, status: int = 400, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.param, self.code, self.kind = status, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": str(self), "type": self.kind, "param": self.param, "code": self.code}}


@dataclass
class Sampled:
    """One completion: its tokens (EOS included), raw log-probs, top alternatives, text, finish reason."""

    token_ids: list[int]
    logprobs: list[float] | None
    top: list[list[tuple[int, float]]] | None
    text: str
    finish_reason: str


@dataclass(frozen=True)
class Decoding:
    """The sampling part of a request, checked."""

    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    n: int
    seed: int | None
    logprobs: int | None  # None: none; 0: the sampled token's only; k: and the top k
    stop: tuple[str, ...]

    def params(self) -> SamplingParams:
        if self.temperature == 0:
            return SamplingParams(strategy="greedy", max_new_tokens=self.max_tokens)
        return SamplingParams(strategy="sample", temperature=self.temperature, top_p=self.top_p,
                              top_k=max(self.top_k, 0), max_new_tokens=self.max_tokens)


# ---------------------------------------------------------------------------------------------
# request fields


def _number(body: dict, name: str, default, kind=float, low=None, high=None, low_open=False):
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not float(value).is_integer()):
        raise RequestError(f"'{name}' must be {'an integer' if kind is int else 'a number'}, got {value!r}", param=name)
    value = kind(value)
    if (low is not None and (value <= low if low_open else value < low)) or (high is not None and value > high):
        bounds = f"{'>' if low_open else '>='} {low}" if high is None else f"in [{low}, {high}]"
        raise RequestError(f"'{name}' must be {bounds}, got {value}", param=name)
    return value


def _stop(body: dict) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > 4:
        raise RequestError("'stop' must be a non-empty string or a list of at most 4 of them", param="stop")
    return tuple(stops)


def decoding(body: dict, default_max_tokens: int, max_tokens_limit: int, logprobs: int | None) -> Decoding:
    """The sampling fields of a completions or chat request, checked against OpenAI's ranges."""
    for flag in ("stream", "echo"):
        if body.get(flag):
            raise RequestError(f"'{flag}' is not supported by rlhfkit serve", param=flag)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = _number({"max_tokens": max_tokens}, "max_tokens", default_max_tokens, int, 1)
    if max_tokens > max_tokens_limit:
        raise RequestError(f"'max_tokens' is {max_tokens}; this server allows at most {max_tokens_limit} "
                           "(rlhfkit serve --max-tokens)", param="max_tokens")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError(f"'seed' must be an integer, got {seed!r}", param="seed")
    return Decoding(
        max_tokens=max_tokens, temperature=_number(body, "temperature", 1.0, float, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, float, 0.0, 1.0, low_open=True), top_k=_number(body, "top_k", -1, int, -1),
        n=_number(body, "n", 1, int, 1, 64), seed=seed, logprobs=logprobs, stop=_stop(body),
    )


def _token_list(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def completion_prompts(body: dict) -> list[str | list[int]]:
    """`prompt` as a list of texts and token-id lists (OpenAI: a string, a list of strings, a list
    of token ids, or a list of such lists)."""
    prompt = body.get("prompt")
    if isinstance(prompt, str) or _token_list(prompt):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) or _token_list(p) for p in prompt):
        return list(prompt)
    raise RequestError("'prompt' must be a string, a list of token ids, or a non-empty list of either", param="prompt")


def chat_messages(body: dict) -> list[dict[str, str]]:
    """`messages` with text content (a string, or a list of {"type": "text", "text": ...} parts)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list of {role, content}", param="messages")
    out = []
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
                raise RequestError(f"messages[{i}].content: only text parts are supported", param="messages")
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str) or not isinstance(message.get("role"), str):
            raise RequestError(f"messages[{i}] must have a string 'role' and text 'content'", param="messages")
        out.append({"role": message["role"], "content": content})
    return out


# ---------------------------------------------------------------------------------------------
# the model


@torch.no_grad()
def raw_logprobs(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, response_ids: torch.Tensor,
                 response_mask: torch.Tensor, top: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """One pass over [prompt | response]: (log π(a_t) (B, T), top-`top` log-probs (B, T, top) and
    their token ids (B, T, top), or None for top 0), π the model at temperature 1, in float32."""
    T = response_ids.shape[1]
    input_ids = torch.cat([prompt_ids, response_ids], dim=1)  # (B, P+T)
    attention = torch.cat([prompt_mask.long(), response_mask.long()], dim=1)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=False,
                logits_to_keep=T + 1)
    logp = torch.log_softmax(out.logits[:, :-1].float(), dim=-1)  # (B, T, V)
    chosen = logp.gather(-1, response_ids[..., None]).squeeze(-1) * response_mask  # (B, T)
    if not top:
        return chosen, None, None
    values, ids = logp.topk(min(top, logp.shape[-1]), dim=-1)
    return chosen, values, ids


class ServedModel:
    """The model behind the server, its tokenizer and name; `lock` keeps one batch on it at a time."""

    def __init__(self, name_or_path: str, served_name: str = "", device: str = "auto", precision: str = "auto",
                 max_tokens: int = 512, max_batch: int = 64):
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.name = served_name or name_or_path
        self.max_tokens, self.max_batch = max_tokens, max_batch
        self.lock = threading.Lock()
        self.loaded_from = name_or_path
        self.model, self.tokenizer = load_policy(name_or_path, device=self.device)
        self._refresh_ids()
        self.created = int(time.time())

    def _refresh_ids(self) -> None:
        self.eos_ids = eos_token_ids(self.model, self.tokenizer)
        self.pad_id = pad_token_id(self.tokenizer)

    def load_weights(self, path: str) -> float:
        """Serve the model saved in `path` from now on (the name stays). Returns the seconds it took."""
        if not Path(path).exists():
            raise RequestError(f"load_weights: {path} does not exist on the server's machine", param="path")
        start = time.perf_counter()
        try:
            model, tokenizer = load_policy(path, device=self.device)
        except (OSError, ValueError) as err:
            raise RequestError(f"load_weights: cannot load {path}: {err}", param="path") from None
        with self.lock:
            self.model, self.tokenizer, self.loaded_from = model, tokenizer, path
            self._refresh_ids()
        return time.perf_counter() - start

    def encode(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, list):
            vocab = len(self.tokenizer)
            if any(t < 0 or t >= max(vocab, self.model.config.vocab_size) for t in prompt):
                raise RequestError(f"'prompt' holds a token id outside the vocabulary [0, {vocab})", param="prompt")
            return prompt
        ids = self.tokenizer(prompt, add_special_tokens=True)["input_ids"]
        if not ids:
            raise RequestError("'prompt' tokenised to zero tokens", param="prompt")
        return ids

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        if not getattr(self.tokenizer, "chat_template", None):
            raise RequestError(f"model {self.name} has no chat template: use /v1/completions", param="messages")
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _left_pad(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        P = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), P), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(prompts), P, dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, P - len(p):] = torch.tensor(p)
            mask[i, P - len(p):] = 1
        return ids.to(self.device), mask.to(self.device)

    def complete(self, prompts: list[list[int]], dec: Decoding) -> list[Sampled]:
        """`dec.n` completions of every prompt (prompt-major), in batches of at most max_batch rows."""
        rows = [p for p in prompts for _ in range(dec.n)]
        seed = dec.seed if dec.seed is not None else int(torch.randint(0, 2**62, (1,)))
        generator = torch.Generator(device=self.device).manual_seed(seed)
        out: list[Sampled] = []
        with self.lock:
            for start in range(0, len(rows), self.max_batch):
                out += self._complete_batch(rows[start : start + self.max_batch], dec, generator)
        return out

    def _complete_batch(self, rows: list[list[int]], dec: Decoding, generator) -> list[Sampled]:
        ids, mask = self._left_pad(rows)  # (B, P)
        self.model.eval()
        with autocast_context(self.device, self.dtype):
            out = sample(self.model, ids, mask, dec.params(), self.eos_ids, self.pad_id,
                         generator if dec.temperature > 0 else None)
            chosen = top_values = top_ids = None
            if dec.logprobs is not None:
                chosen, top_values, top_ids = raw_logprobs(self.model, ids, mask, out["response_ids"],
                                                           out["response_mask"], dec.logprobs)
        results = []
        for b in range(len(rows)):
            n_tokens = int(out["response_mask"][b].sum())
            tokens = out["response_ids"][b, :n_tokens].tolist()
            logprobs = chosen[b, :n_tokens].tolist() if chosen is not None else None
            top = None
            if top_values is not None:
                top = [list(zip(top_ids[b, t].tolist(), top_values[b, t].tolist())) for t in range(n_tokens)]
            finish = "stop" if bool(out["finished"][b]) else "length"
            results.append(self._apply_stop(tokens, logprobs, top, finish, dec.stop))
        return results

    def _apply_stop(self, tokens, logprobs, top, finish: str, stops: tuple[str, ...]) -> Sampled:
        """Cut a completion before the first stop string (its text) and after the token that
        completed it (its tokens)."""
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        hits = [(text.find(s), s) for s in stops if s in text]
        if not hits:
            return Sampled(tokens, logprobs, top, text, finish)
        cut, stop = min(hits)
        keep = next(k for k in range(1, len(tokens) + 1)
                    if stop in self.tokenizer.decode(tokens[:k], skip_special_tokens=True))
        return Sampled(tokens[:keep], logprobs[:keep] if logprobs else logprobs, top[:keep] if top else top,
                       text[:cut], "stop")

    def token_text(self, token_id: int, as_id: bool = False) -> str:
        return f"token_id:{token_id}" if as_id else self.tokenizer.decode([token_id])


# ---------------------------------------------------------------------------------------------
# replies


def _usage(prompts: list[list[int]], samples: list[Sampled], n: int) -> dict:
    prompt_tokens = sum(len(p) for p in prompts)
    completion_tokens = sum(len(s.token_ids) for s in samples)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _completion_logprobs(served: ServedModel, s: Sampled, as_ids: bool) -> dict:
    """Legacy completions log-probs: tokens, token_logprobs, top_logprobs ({token: logprob}), text_offset."""
    tokens = [served.token_text(t, as_ids) for t in s.token_ids]
    # where each token starts in the returned text (special tokens are not in the text)
    offsets = [len(served.tokenizer.decode(s.token_ids[:k], skip_special_tokens=True)) for k in range(len(s.token_ids))]
    top = None
    if s.top is not None:
        top = [{served.token_text(t, as_ids): lp for t, lp in alternatives} for alternatives in s.top]
    return {"tokens": tokens, "token_logprobs": s.logprobs, "top_logprobs": top, "text_offset": offsets}


def completions_reply(served: ServedModel, body: dict) -> dict:
    logprobs = body.get("logprobs")
    if logprobs is not None:
        logprobs = _number(body, "logprobs", 0, int, 0, MAX_LOGPROBS)
    dec = decoding(body, 16, served.max_tokens, logprobs)
    prompts = [served.encode(p) for p in completion_prompts(body)]
    samples = served.complete(prompts, dec)
    as_ids = bool(body.get("return_tokens_as_token_ids"))
    choices = []
    for i, s in enumerate(samples):
        choice = {"index": i, "text": s.text, "finish_reason": s.finish_reason,
                  "logprobs": _completion_logprobs(served, s, as_ids) if s.logprobs is not None else None}
        if body.get("return_token_ids"):
            choice["token_ids"] = s.token_ids
        choices.append(choice)
    return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": served.name, "choices": choices, "usage": _usage(prompts, samples, dec.n)}


def _chat_logprobs(served: ServedModel, s: Sampled) -> dict:
    def entry(token_id: int, logprob: float) -> dict:
        text = served.token_text(token_id)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    content = []
    for k, (t, lp) in enumerate(zip(s.token_ids, s.logprobs)):
        alternatives = [entry(a, alp) for a, alp in s.top[k]] if s.top is not None else []
        content.append({**entry(t, lp), "top_logprobs": alternatives})
    return {"content": content}


def chat_reply(served: ServedModel, body: dict) -> dict:
    logprobs = None
    if body.get("logprobs"):
        logprobs = _number(body, "top_logprobs", 0, int, 0, MAX_LOGPROBS)
    elif body.get("top_logprobs"):
        raise RequestError("'top_logprobs' needs 'logprobs': true", param="top_logprobs")
    dec = decoding(body, served.max_tokens, served.max_tokens, logprobs)
    prompts = [served.encode_chat(chat_messages(body))]
    samples = served.complete(prompts, dec)
    choices = [{"index": i, "message": {"role": "assistant", "content": s.text}, "finish_reason": s.finish_reason,
                "logprobs": _chat_logprobs(served, s) if s.logprobs is not None else None}
               for i, s in enumerate(samples)]
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": served.name, "choices": choices, "usage": _usage(prompts, samples, dec.n)}


def models_reply(served: ServedModel) -> dict:
    return {"object": "list", "data": [{"id": served.name, "object": "model", "created": served.created,
                                         "owned_by": "rlhfkit", "root": served.loaded_from}]}


def load_weights_reply(served: ServedModel, body: dict) -> dict:
    path = body.get("path")
    if not isinstance(path, str) or not path:
        raise RequestError("'path' must name a model folder on the server's machine", param="path")
    seconds = served.load_weights(path)
    return {"status": "ok", "model": served.name, "path": path, "seconds": round(seconds, 3)}


# ---------------------------------------------------------------------------------------------
# HTTP


def _check_model(served: ServedModel, body: dict) -> None:
    model = body.get("model")
    if model not in (None, "", served.name):
        raise RequestError(f"model '{model}' is not served here; this server serves '{served.name}'", status=404,
                           param="model", code="model_not_found")


POST_ROUTES = {"/v1/completions": completions_reply, "/v1/chat/completions": chat_reply}


def make_handler(served: ServedModel, access_log: bool = False) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: every reply carries its Content-Length
        server_version = "rlhfkit-serve"

        def setup(self):
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format, *args):  # noqa: A002 - the base class's signature
            if access_log:
                super().log_message(format, *args)

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _answer(self, reply) -> None:
            try:
                self._send(200, reply())
            except RequestError as err:
                self._send(err.status, err.body())
            except Exception as err:  # noqa: BLE001 - the client gets the error, the server keeps serving
                self._send(500, RequestError(f"{type(err).__name__}: {err}", 500, kind="server_error").body())

        def do_GET(self):  # noqa: N802 - http.server's naming
            path = self.path.split("?")[0].rstrip("/")
            routes = {"/v1/models": lambda: models_reply(served), "/health": lambda: {"status": "ok"}}
            if path not in routes:
                return self._answer(lambda: _not_found(self.command, path))
            self._answer(routes[path])

        def do_POST(self):  # noqa: N802
            path = self.path.split("?")[0].rstrip("/")
            self._answer(lambda: self._post(path))

        def _post(self, path: str) -> dict:
            body = self._body()
            if path == "/v1/load_weights":
                return load_weights_reply(served, body)
            if path not in POST_ROUTES:
                return _not_found(self.command, path)
            _check_model(served, body)
            return POST_ROUTES[path](served, body)

        def _body(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                raise RequestError("the request body is not valid JSON") from None
            if not isinstance(body, dict):
                raise RequestError("the request body must be a JSON object")
            return body

    return Handler


def _not_found(method: str, path: str) -> dict:
    known = "GET /v1/models, POST /v1/completions, POST /v1/chat/completions, POST /v1/load_weights"
    raise RequestError(f"{method} {path} is not an endpoint here ({known})", status=404, code="not_found")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Server6(Server):
    address_family = socket.AF_INET6


def bind(host: str, port: int) -> Server:
    """A server bound to (host, port) without a handler yet, so that a port in use fails before
    the model loads."""
    try:
        return (Server6 if ":" in host else Server)((host, port), BaseHTTPRequestHandler)
    except OSError as err:
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None


def start(served: ServedModel, host: str = "127.0.0.1", port: int = 0, access_log: bool = False) -> Server:
    """Serve `served` from a background thread; returns the server (`.server_address`, `.shutdown()`)."""
    server = bind(host, port)
    server.RequestHandlerClass = make_handler(served, access_log)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_serve(cfg: ServeConfig) -> None:
    """`rlhfkit serve`: bind, load the model, serve until Ctrl+C."""
    resolve_policy_path(cfg.model)  # a wrong name fails before anything else
    server = bind(cfg.host, cfg.port)
    try:
        served = ServedModel(cfg.model, cfg.served_model_name, cfg.device, cfg.precision, cfg.max_tokens, cfg.max_batch)
        server.RequestHandlerClass = make_handler(served, cfg.access_log)
        host, port = server.server_address[:2]
        print(f"[rlhfkit] serving {cfg.model} as '{served.name}' on http://{host}:{port}/v1 "
              f"({served.device}, {str(served.dtype).removeprefix('torch.')}); Ctrl+C stops", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        print("[rlhfkit] server stopped", file=sys.stderr)
    finally:
        server.server_close()
