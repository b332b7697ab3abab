"""Model loading, heads and checkpoints."""

from pathlib import Path

import pytest
import torch

from rlhfkit.models import RewardModel, ValueHead, load_reward_model, loading
from rlhfkit.models.loading import (
    ModelNotFoundError,
    resolve_policy_path,
    resolve_precision,
)
from tests.conftest import needs_embedded


def test_value_head_starts_at_zero():
    head = ValueHead(8)
    assert head(torch.randn(2, 3, 8)).abs().sum().item() == 0


def test_reward_model_on_a_decoder_save_load_and_center(tmp_path, tiny_llama, tiny_tok):
    tiny_llama.save_pretrained(tmp_path / "tiny")
    tiny_tok.save_pretrained(tmp_path / "tiny")
    rm = load_reward_model(str(tmp_path / "tiny"))
    assert rm.pooling == "last"
    prompts, responses = ["the movie was", "i loved it"], ["good", "bad bad"]
    scores = rm.score(prompts, responses)
    shift = rm.center(prompts, responses)
    assert shift == pytest.approx(float(scores.mean()), abs=1e-5)
    assert float(rm.score(prompts, responses).mean()) == pytest.approx(0.0, abs=1e-5)
    rm.save(tmp_path / "rm")
    again = load_reward_model(str(tmp_path / "rm"))
    assert torch.allclose(again.score(prompts, responses), rm.score(prompts, responses), atol=1e-5)


def test_model_names_that_cannot_resolve(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_policy_path(str(tmp_path / "nothing.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="without config.json"):
        resolve_policy_path(str(tmp_path / "empty"))
    with pytest.raises(ModelNotFoundError, match="neither"):
        resolve_policy_path("not-a-model")
    assert resolve_policy_path("org/name") == ("org/name", None)  # hub ids pass through untouched


def _cpu_flags() -> set[str]:
    """The CPU feature flags as the kernel lists them (the words after "flags :"), read here
    without the library's detector; empty where /proc/cpuinfo is not there."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {word for line in text.splitlines() if line.startswith("flags") for word in line.split(":", 1)[1].split()}


def test_precision_choice():
    assert resolve_precision("fp32", torch.device("cpu")) == torch.float32
    assert resolve_precision("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError):
        resolve_precision("fp8", torch.device("cpu"))


def test_auto_precision_on_this_cpu_follows_its_bf16_flags():
    # bf16 where the CPU computes it natively (AVX512-BF16 or AMX-BF16), else fp32
    native = bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})
    assert resolve_precision("auto", torch.device("cpu")) == (torch.bfloat16 if native else torch.float32)


@pytest.mark.parametrize("has_bf16, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_precision_takes_both_branches(monkeypatch, has_bf16, expected):
    monkeypatch.setattr(loading, "_cpu_has_bf16", lambda: has_bf16)
    assert resolve_precision("auto", torch.device("cpu")) == expected
    # on CUDA the device's own bf16 support decides, whatever the CPU has
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: has_bf16)
    assert resolve_precision("auto", torch.device("cuda")) == expected
    monkeypatch.setattr(loading, "_cpu_has_bf16", lambda: not has_bf16)
    assert resolve_precision("auto", torch.device("cuda")) == expected


@needs_embedded
def test_embedded_policy_converts_once_and_loads_from_cache(tmp_path, monkeypatch):
    from rlhfkit.models import load_policy
    from rlhfkit.models.loading import _SMOLLM2_SHA256, cache_dir

    model, tokenizer = load_policy("smollm2-135m-instruct")
    path, _ = resolve_policy_path("smollm2-135m-instruct")
    assert path.startswith(str(cache_dir())) and _SMOLLM2_SHA256[:12] in path
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.chat_template
    ids = tokenizer("The movie was", return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits[0, -1]
    assert torch.isfinite(logits).all()


@needs_embedded
def test_embedded_policy_rejects_a_corrupt_gguf(tmp_path, monkeypatch):
    from rlhfkit.models import loading

    fake = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    fake.write_bytes(b"GGUF not really")
    monkeypatch.setenv("RLHFKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(loading, "embedded_policy_gguf", lambda: fake)
    with pytest.raises(ValueError, match="sha256 .* does not match"):
        loading.resolve_policy_path("smollm2-135m-instruct")
    assert not (tmp_path / "cache" / "models").exists() or not any((tmp_path / "cache" / "models").iterdir())


@needs_embedded
def test_embedded_reward_backbone_is_minilm():
    rm = load_reward_model("all-minilm-l6-v2")
    assert isinstance(rm, RewardModel) and rm.pooling == "mean"
    assert rm.backbone.config.hidden_size == 384 and rm.backbone.config.num_hidden_layers == 6
    assert rm.score(["p"], ["a fine answer"]).shape == (1,)


def test_a_saved_lora_adapter_loads_merged(tmp_path, tiny_llama, tiny_tok):
    from rlhfkit.models import add_lora, load_policy

    tiny_llama.save_pretrained(tmp_path / "base")
    tiny_tok.save_pretrained(tmp_path / "base")
    base, _ = load_policy(str(tmp_path / "base"))
    peft_model = add_lora(base, r=4, alpha=8)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.05)  # a non-trivial adapter
    peft_model.save_pretrained(tmp_path / "adapter")
    tiny_tok.save_pretrained(tmp_path / "adapter")
    merged, tok = load_policy(str(tmp_path / "adapter"))
    ids = torch.tensor([tok("the movie was")["input_ids"]])
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits
        plain_base = tiny_llama(input_ids=ids).logits
        got = merged(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-5) and not torch.allclose(got, plain_base, atol=1e-3)
