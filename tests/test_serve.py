"""`rlhfkit serve` and the rollout backends, end to end over real HTTP on 127.0.0.1 (a free port):
the openai backend against our own server gives the local sampler's outputs at temperature 0,
chat log-probs equal the local model's, the judge, eval sample and RL run through it, and bad
requests get OpenAI-style errors. The vLLM path needs a CUDA GPU and the vllm package (skipped
here with that reason; its error message is tested)."""

from __future__ import annotations

import importlib.util
import json
import socket
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
import threading

import pytest
import torch

from rlhfkit.cli import main
from rlhfkit.generation.serve import ServedModel, start
from rlhfkit.models import load_policy

PROMPTS = ["the movie was", "i loved it", "what a wonderful film . the cast is", "boring"]


@pytest.fixture()
def server(tiny_dir):
    """`rlhfkit serve TINY` in this process on a free port: (base URL, the ServedModel)."""
    served = ServedModel(tiny_dir, device="cpu", precision="fp32")
    httpd = start(served, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", served
    finally:
        httpd.shutdown()
        httpd.server_close()


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _prompt_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    return path


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("chat", ["no", "yes"])
def test_generate_through_serve_equals_the_local_sampler_at_temperature_0(server, tiny_dir, tmp_path, chat):
    url, _ = server
    prompts = _prompt_file(tmp_path)
    common = ["generate", "--model", tiny_dir, "--prompts", str(prompts), "--strategy", "greedy", "--chat", chat,
              "--max-new-tokens", "6", "--precision", "fp32", "--device", "cpu"]
    assert main([*common, "--output", str(tmp_path / "local.jsonl")]) == 0
    assert main([*common, "--output", str(tmp_path / "served.jsonl"), "--rollout-backend", "openai",
                 "--base-url", url]) == 0
    local, served = _rows(tmp_path / "local.jsonl"), _rows(tmp_path / "served.jsonl")
    assert [r["prompt"] for r in served] == PROMPTS
    assert [r["response"] for r in served] == [r["response"] for r in local]
    assert [r["tokens"] for r in served] == [r["tokens"] for r in local]
    assert [r["finished"] for r in served] == [r["finished"] for r in local]
    # greedy: the local sampler's log-probs are the model's own (temperature 1), as the server's
    assert [r["logprob"] for r in served] == pytest.approx([r["logprob"] for r in local], abs=1e-4)


def test_chat_logprobs_equal_the_local_models(server, tiny_dir):
    url, _ = server
    messages = [{"role": "user", "content": "the movie was good"}]
    status, reply = post(f"{url}/chat/completions", {"messages": messages, "max_tokens": 5, "temperature": 0,
                                                      "logprobs": True, "top_logprobs": 3})
    assert status == 200 and reply["object"] == "chat.completion"
    content = reply["choices"][0]["logprobs"]["content"]
    model, tok = load_policy(tiny_dir)
    ids = tok(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
              add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        for step in content:
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -1], dim=-1)  # (V,)
            token = int(logp.argmax())  # temperature 0: the argmax
            assert step["token"] == tok.decode([token])
            assert step["logprob"] == pytest.approx(float(logp[token]), abs=1e-4)
            top = torch.topk(logp, 3)
            assert [t["logprob"] for t in step["top_logprobs"]] == pytest.approx(top.values.tolist(), abs=1e-4)
            assert [t["token"] for t in step["top_logprobs"]] == [tok.decode([i]) for i in top.indices.tolist()]
            ids.append(token)
    text = tok.decode(ids[-len(content):], skip_special_tokens=True)
    assert reply["choices"][0]["message"] == {"role": "assistant", "content": text}
    assert reply["usage"]["completion_tokens"] == len(content)


def test_completions_take_token_ids_seeds_n_and_stop(server, tiny_dir):
    url, served = server
    ids = served.tokenizer("i loved it", add_special_tokens=True)["input_ids"]
    greedy = {"max_tokens": 6, "temperature": 0, "logprobs": 0}
    _, by_text = post(f"{url}/completions", {"prompt": "i loved it", **greedy})
    _, by_ids = post(f"{url}/completions", {"prompt": ids, **greedy, "return_tokens_as_token_ids": True})
    assert by_ids["choices"][0]["text"] == by_text["choices"][0]["text"]
    assert by_ids["choices"][0]["logprobs"]["token_logprobs"] == by_text["choices"][0]["logprobs"]["token_logprobs"]
    assert all(t.startswith("token_id:") for t in by_ids["choices"][0]["logprobs"]["tokens"])
    sampled = {"prompt": ["the movie was", ids], "max_tokens": 5, "temperature": 1.0, "n": 3, "seed": 7}
    first, again = post(f"{url}/completions", sampled)[1], post(f"{url}/completions", sampled)[1]
    assert len(first["choices"]) == 6 and [c["index"] for c in first["choices"]] == list(range(6))
    assert [c["text"] for c in first["choices"]] == [c["text"] for c in again["choices"]]  # same seed, same text
    # a stop string cuts the text before it; the finish reason says so
    text = by_text["choices"][0]["text"]
    stop = text.split()[1]
    _, stopped = post(f"{url}/completions", {"prompt": "i loved it", **greedy, "stop": [stop]})
    assert stopped["choices"][0]["text"] == text[: text.index(stop)]
    assert stopped["choices"][0]["finish_reason"] == "stop"
    status, models = 200, json.loads(urllib.request.urlopen(f"{url}/models", timeout=30).read())
    assert models["data"][0]["id"] == tiny_dir


@pytest.mark.parametrize("path, body, status, param, message", [
    ("completions", {"prompt": "x", "temperature": -1}, 400, "temperature", "'temperature' must be in [0.0, 2.0]"),
    ("completions", {"prompt": "x", "max_tokens": 0}, 400, "max_tokens", "'max_tokens' must be >= 1"),
    ("completions", {"prompt": "x", "max_tokens": 10_000}, 400, "max_tokens", "this server allows at most 512"),
    ("completions", {"prompt": 3}, 400, "prompt", "'prompt' must be a string"),
    ("completions", {"prompt": [10**9]}, 400, "prompt", "outside the vocabulary"),
    ("completions", {"prompt": "x", "n": 0}, 400, "n", "'n' must be in [1, 64]"),
    ("completions", {"prompt": "x", "stream": True}, 400, "stream", "'stream' is not supported"),
    ("completions", {"prompt": "x", "logprobs": 50}, 400, "logprobs", "'logprobs' must be in [0, 20]"),
    ("completions", {"model": "gpt-4", "prompt": "x"}, 404, "model", "model 'gpt-4' is not served here"),
    ("chat/completions", {"messages": []}, 400, "messages", "'messages' must be a non-empty list"),
    ("chat/completions", {"messages": [{"role": "user"}]}, 400, "messages", "messages[0] must have"),
    ("chat/completions", {"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, 400, "top_logprobs",
     "'top_logprobs' needs 'logprobs': true"),
    ("load_weights", {"path": "/no/such/folder"}, 400, "path", "does not exist"),
    ("embeddings", {"input": "x"}, 404, None, "POST /v1/embeddings is not an endpoint here"),
])
def test_bad_requests_get_openai_style_errors(server, path, body, status, param, message):
    url, _ = server
    got, reply = post(f"{url}/{path}", body)
    assert got == status
    error = reply["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert message in error["message"]


def test_a_body_that_is_not_json_is_a_400(server):
    url, _ = server
    request = urllib.request.Request(f"{url}/completions", data=b"{not json", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=30)
    assert err.value.code == 400
    assert json.loads(err.value.read())["error"]["message"] == "the request body is not valid JSON"


def _rl_args(tiny_dir: str, url: str, out: Path, *extra: str) -> list[str]:
    return ["rl", "--policy", tiny_dir, "--algo", "grpo", "--steps", "2", "--batch-size", "4", "--mini-batch-size", "4",
            "--max-new-tokens", "4", "--eval-prompts", "0", "--reward", "length", "--learning-rate", "0.05",
            "--rollout-backend", "openai", "--base-url", url, "--output-dir", str(out), "--run-name", "rl",
            "--precision", "fp32", "--device", "cpu", *extra]


def test_rl_two_steps_through_serve_pushes_each_update_to_the_server(server, tiny_dir, tmp_path):
    url, served = server
    assert main(_rl_args(tiny_dir, url, tmp_path)) == 0
    steps = [json.loads(line) for line in (tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if s.get("stage") == "rl"]
    assert len(steps) == 2
    for s in steps:
        # the server's log-probs are the same model's in float32: ratios ~1, none capped
        assert s["rollout/importance_ratio_mean"] == pytest.approx(1.0, abs=1e-3)
        assert s["rollout/importance_capped_fraction"] == 0.0
        assert s["rollout/importance_abs_logprob_diff_max"] < 1e-3
        assert s["time/weight_sync"] > 0
    # after the last update the server holds the trained policy, which is no longer the base
    final, _ = load_policy(str(tmp_path / "rl" / "checkpoints" / "final"))
    base, _ = load_policy(tiny_dir)
    ids = torch.tensor([[5, 9, 13, 21, 8]])
    with torch.no_grad():
        served_logits, final_logits = served.model(input_ids=ids).logits, final(input_ids=ids).logits
        assert torch.allclose(served_logits, final_logits, atol=1e-5)
        assert not torch.allclose(final_logits, base(input_ids=ids).logits, atol=1e-3)


class _NoReload(BaseHTTPRequestHandler):
    """A third-party server that answers completions but has no /v1/load_weights."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"error": {"message": "Not Found", "type": "invalid_request_error", "param": None,
                                     "code": None}}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_rl_against_a_server_that_cannot_reload_weights_says_so(tiny_dir, tmp_path, capsys):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _NoReload)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        assert main(_rl_args(tiny_dir, url, tmp_path)) == 1
    finally:
        httpd.shutdown()
        httpd.server_close()
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("rlhfkit: error: the server at http://127.0.0.1:")
    assert "cannot reload weights (POST /v1/load_weights" in err[-1]
    assert "rlhfkit serve" in err[-1]


def _label_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture()
def digit_dir(tmp_path) -> str:
    """A tiny random Llama over a 14-token vocabulary that holds the judge's choices "1" and "2":
    the server's top-20 log-probs then list every token, so the HTTP judge reads the same exact
    choice log-probs as the local one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from rlhfkit.models.tiny import SPECIAL, tiny_causal_lm

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tok.train_from_iterator(["1 2 = : the movie was good bad"], trainer=trainers.WordLevelTrainer(special_tokens=SPECIAL))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                                   unk_token="<unk>")
    path = tmp_path / "digits"
    tiny_causal_lm("llama", vocab_size=len(fast), seed=3).save_pretrained(path)
    fast.save_pretrained(path)
    return str(path)


def test_label_with_serve_as_the_http_judge_agrees_with_the_local_judge(digit_dir, tmp_path):
    served = ServedModel(digit_dir, device="cpu", precision="fp32")
    httpd = start(served)
    url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    pairs = Path(__file__).resolve().parents[1] / "examples" / "prefs.jsonl"
    # one order only: the soft label is the judge's own P("1") vs P("2"), not averaged towards ½
    common = ["label", "--pairs", str(pairs), "--limit", "3", "--cache", "off", "--debias", "none", "--precision", "fp32",
              "--device", "cpu"]
    try:
        assert main([*common, "--judge", url, "--output", str(tmp_path / "http.jsonl")]) == 0
    finally:
        httpd.shutdown()
        httpd.server_close()
    # the HTTP judge sends request + ending as one plain text: the local judge without chat template
    assert main([*common, "--judge", digit_dir, "--chat", "no", "--output", str(tmp_path / "local.jsonl")]) == 0
    http, local = _label_rows(tmp_path / "http.jsonl"), _label_rows(tmp_path / "local.jsonl")
    assert len(http) == len(local) == 3
    assert [r["label"] for r in http] == pytest.approx([r["label"] for r in local], abs=1e-4)
    assert all(abs(r["label"] - 0.5) > 1e-3 for r in local)  # real preferences, not the 0.5 of unknown choices


def test_eval_sample_through_serve(server, tiny_dir, tmp_path):
    url, served = server
    args = ["eval", "sample", "--policies", f"served={tiny_dir},best=best_of_n:{tiny_dir}:2:length", "--n-prompts", "3",
            "--max-new-tokens", "4", "--output-dir", str(tmp_path), "--rollout-backend", "openai", "--base-url", url,
            "--device", "cpu"]
    assert main(args) == 0
    for name in ("served", "best"):
        rows = [json.loads(line) for line in (tmp_path / "eval" / "samples" / f"{name}.jsonl").read_text().splitlines()]
        assert len(rows) == 3 and all(isinstance(r["response"], str) for r in rows) and all("gold" in r for r in rows)
    meta = json.loads((tmp_path / "eval" / "samples" / "served.meta.json").read_text())
    assert meta["rollout_backend"] == "openai" and meta["base_url"] == url
    # the same settings again: the samples are reused, the server is not asked
    served.model = None  # a request would now fail
    assert main(args) == 0


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None or not torch.cuda.is_available(),
                    reason="the vLLM backend needs the vllm package and a CUDA GPU (neither is lent to this machine)")
def test_vllm_generate_equals_the_local_sampler_at_temperature_0(tiny_dir, tmp_path):
    prompts = _prompt_file(tmp_path)
    common = ["generate", "--model", tiny_dir, "--prompts", str(prompts), "--strategy", "greedy", "--chat", "no",
              "--max-new-tokens", "6", "--precision", "fp32"]
    assert main([*common, "--output", str(tmp_path / "local.jsonl")]) == 0
    assert main([*common, "--output", str(tmp_path / "vllm.jsonl"), "--rollout-backend", "vllm"]) == 0
    assert [r["response"] for r in _rows(tmp_path / "vllm.jsonl")] == [r["response"] for r in _rows(tmp_path / "local.jsonl")]


def test_vllm_backend_without_vllm_or_gpu_is_one_clear_error(tiny_dir, tmp_path, capsys):
    if importlib.util.find_spec("vllm") is not None and torch.cuda.is_available():
        pytest.skip("vllm and a GPU are here: the backend runs (tested above)")
    code = main(["generate", "--model", tiny_dir, "--prompts", str(_prompt_file(tmp_path)), "--rollout-backend", "vllm",
                 "--output", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    expected = "vllm is not installed" if importlib.util.find_spec("vllm") is None else "needs a CUDA GPU"
    assert err[0].startswith("rlhfkit: error: --rollout-backend vllm") and expected in err[0]
    assert not (tmp_path / "o.jsonl").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("extra, message", [
    (["--rollout-backend", "openai"], "--rollout-backend openai needs --base-url http://HOST:PORT/v1"),
    (["--base-url", "http://127.0.0.1:1/v1"], "--base-url is for --rollout-backend openai (the backend is hf)"),
    (["--rollout-backend", "openai", "--base-url", "http://127.0.0.1:1/v1", "--strategy", "beam"],
     "--strategy beam runs on our own sampler only"),
])
def test_backend_options_are_checked_before_anything_loads(tiny_dir, tmp_path, capsys, extra, message):
    code = main(["generate", "--model", tiny_dir, "--prompts", str(_prompt_file(tmp_path)), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"rlhfkit: error: {message}")


def test_a_server_that_is_down_is_one_error_line(tiny_dir, tmp_path, capsys):
    url = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens there
    code = main(["generate", "--model", tiny_dir, "--prompts", str(_prompt_file(tmp_path)), "--chat", "no",
                 "--rollout-backend", "openai", "--base-url", url, "--output", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0].startswith(f"rlhfkit: error: {url}/completions: no answer after 3 attempts")


def test_serve_on_a_port_in_use_is_one_error_line(tiny_dir, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", tiny_dir, "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rlhfkit: error: cannot listen on 127.0.0.1:{port}: Address already in use"]


def test_openai_rollout_carries_the_served_models_tokens_and_logprobs(tiny_dir, tiny_tok, tmp_path):
    """RL's path: token ids out, sampled ids and log-probs back. The server here holds another model
    than the trainer's: the rollout's log-probs are the served model's, which the importance weights
    then compare with the trainer's own."""
    from rlhfkit.algorithms.importance import truncated_importance_weights
    from rlhfkit.generation.backends import OpenAIBackend
    from rlhfkit.generation.sampling import SamplingParams
    from rlhfkit.models.forward import response_forward
    from rlhfkit.models.tiny import tiny_causal_lm

    other = tmp_path / "other"
    tiny_causal_lm("llama", vocab_size=len(tiny_tok), seed=5).save_pretrained(other)
    tiny_tok.save_pretrained(other)
    httpd = start(ServedModel(str(other), device="cpu", precision="fp32"))
    try:
        backend = OpenAIBackend(f"http://127.0.0.1:{httpd.server_address[1]}/v1", str(other))
        params = SamplingParams(strategy="sample", max_new_tokens=6)
        ro = backend.rollout(tiny_tok, PROMPTS, params, chat=False, seed=3)
        again = backend.rollout(tiny_tok, PROMPTS, params, chat=False, seed=3)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert torch.equal(ro.response_ids, again.response_ids)  # the seed fixes the samples
    assert ro.response_ids.shape[0] == len(PROMPTS) and ro.prompts == PROMPTS
    lengths = ro.response_mask.sum(1).long()
    for b in range(len(PROMPTS)):  # a finished row ends with its EOS, an unfinished one ran to the limit
        if ro.finished[b]:
            assert int(ro.response_ids[b, lengths[b] - 1]) == tiny_tok.eos_token_id
        else:
            assert int(lengths[b]) == 6
    served_model, _ = load_policy(str(other))
    trainer_model, _ = load_policy(tiny_dir)
    with torch.no_grad():
        served_lp = response_forward(served_model, ro.prompt_ids, ro.prompt_mask, ro.response_ids, ro.response_mask).logprobs
        trainer_lp = response_forward(trainer_model, ro.prompt_ids, ro.prompt_mask, ro.response_ids, ro.response_mask).logprobs
    assert torch.allclose(ro.logprobs, served_lp, atol=1e-4)
    weights, stats = truncated_importance_weights(trainer_lp, ro.logprobs, ro.response_mask, cap=2.0)
    assert stats["abs_logprob_diff_max"] > 0.1  # two different random models
    assert float(weights.max()) <= 2.0 and bool((weights[ro.response_mask == 0] == 0).all())
