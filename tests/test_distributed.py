"""Two processes on gloo give what one process gives with the same global batch: sft, dpo, rm,
rl-grpo and rl-ppo on tiny models (trainers/distributed.py).

One spawn of two real processes (torch.multiprocessing, a gloo process group made by
Accelerate's `Accelerator` from the launcher's environment variables, as under `accelerate
launch`) runs all five scenarios; each scenario also runs here in this one process, and the
tests compare the logged losses and the weights after a few optimiser steps.

Tolerance: atol 1e-5 on the weights; rel 1e-5 on the losses and statistics, with atol 1e-6 for
those that are zero in exact arithmetic (GRPO's first policy loss, a mean of group-centred
advantages: float32 sums of terms of size ~4 land within ~1e-6 of zero). The two runs add the same
float32 terms in different orders and shapes (a micro-batch of 4 rows in place of 8, a
sum of two processes' partial gradients, rows padded to another width), which changes the
last bits of each sum (float32 ε ≈ 1.2e-7 relative); Adam divides the gradient by its own size,
so a few steps at lr 1e-3 keep those differences near 1e-7–1e-6 and far below any real
difference (one step moves a weight by about lr = 1e-3). The RL scenarios step plain SGD in
place of Adam: a policy-gradient batch leaves weights whose true gradient is 0 but whose computed
one is rounding noise, and Adam's first step moves each of those by ±lr on the noise's sign, which
the summation order (this CPU's kernels) decides; SGD moves them by lr·noise. The two processes must end with
*bitwise* equal weights: they step the same optimiser on the same all-reduced gradient.

Online RL samples with one generator per process, so 2 processes cannot draw the samples one
process draws; the RL scenarios therefore sample two rollouts up front (the same on every
process: same weights, same seed) and run `OnlineTrainer.learn` on each process's rows of them
(score → shape → advantages → loss → step): what is compared is everything after sampling.
"""

from __future__ import annotations

import copy
import os
import socket
from dataclasses import replace

import pytest
import torch
import torch.multiprocessing as mp

from rlhfkit.generation.sampling import SamplingParams, generate
from rlhfkit.models.heads import RewardModel
from rlhfkit.models.lora import frozen_copy
from rlhfkit.models.tiny import tiny_causal_lm, tiny_tokenizer
from rlhfkit.trainers import distributed
from rlhfkit.trainers.checkpoint import Checkpointer
from rlhfkit.trainers.config import DPOConfig, RewardTrainConfig, RLConfig, SFTConfig
from rlhfkit.trainers.dpo import train_dpo
from rlhfkit.trainers.online import OnlineTrainer
from rlhfkit.trainers.reward import train_reward_model
from rlhfkit.trainers.sft import train_sft
from rlhfkit.types import PairwiseRecord, SFTRecord

WORDS = ["good", "great", "bad", "fine", "the movie", "a plot", "it was", "so so"]
PROMPTS = ["the movie was", "i loved it", "what is two plus two", "the cast is"]
LR = 1e-3
RL_SGD_LR = 0.05  # clipped gradients (norm <= 1): moves of ~1e-3 per step


def _model(seed: int = 0):
    return tiny_causal_lm("llama", vocab_size=len(tiny_tokenizer()), seed=seed)


def _weights(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _sft(tok):
    records = [SFTRecord(prompt=f"q {w}", completion=f"{w} {WORDS[(i + 3) % 8]} end") for i, w in enumerate(WORDS)]
    policy = _model()
    cfg = SFTConfig(lora=False, batch_size=8, micro_batch_size=2, max_steps=3, learning_rate=LR, chat="no", seed=0)
    result = train_sft(policy, tok, records, cfg, progress=False)
    return [h["loss"] for h in result["history"]], _weights(policy)


def _dpo(tok):
    pairs = [PairwiseRecord(prompt=f"q {w}", chosen=f"{w} good", rejected=f"{w} bad {WORDS[i]}")
             for i, w in enumerate(WORDS)]
    policy = _model()
    cfg = DPOConfig(lora=False, batch_size=8, micro_batch_size=2, max_steps=3, learning_rate=LR, chat="no", seed=0)
    result = train_dpo(policy, tok, pairs, cfg, progress=False)
    return [h["loss"] for h in result["history"]], _weights(policy)


def _rm(tok):
    pairs = [PairwiseRecord(prompt=f"q {w}", chosen=f"{w} good", rejected=f"{w} bad") for w in WORDS]
    torch.manual_seed(0)  # the head's initial weights
    rm = RewardModel(_model(), tok, pooling="last", max_length=32)
    cfg = RewardTrainConfig(epochs=3, batch_size=8, learning_rate=LR, head_learning_rate=LR, seed=0)
    history: list[dict] = []
    train_reward_model(rm, pairs, cfg, logger=history.append, progress=False)
    return [h["loss"] for h in history if h["stage"] == "reward_model"], _weights(rm)


def _rollouts(policy, tok, cfg: RLConfig):
    """Two rollouts of the 4 prompts × G samples from the initial policy (the same everywhere)."""
    prompts = [p for p in PROMPTS for _ in range(cfg.group_size)]
    params = SamplingParams(strategy="sample", temperature=1.0, max_new_tokens=cfg.max_new_tokens)
    return [generate(policy, tok, prompts, params, chat=False, generator=torch.Generator().manual_seed(seed))
            for seed in (11, 12)]


def _rows(ro, dist):
    """This process's rows of a rollout (all of them in one process)."""
    start, stop = dist.bounds(len(ro.prompts))
    tensors = {k: getattr(ro, k)[start:stop] for k in ("prompt_ids", "prompt_mask", "response_ids", "response_mask",
                                                        "logprobs")}
    finished = ro.finished[start:stop] if ro.finished is not None else None
    return replace(ro, **tensors, prompts=ro.prompts[start:stop], responses=ro.responses[start:stop], finished=finished)


def _good_words(prompts, responses, **_):
    return [sum(w in ("good", "great", "fine") for w in r.split()) / max(len(r.split()), 1) + 0.1 * len(r.split())
            for r in responses]


def _rl(tok, algo: str):
    torch.manual_seed(0)
    policy = _model()
    extra = dict(group_size=2, score_norm="batch") if algo == "grpo" else dict(ppo_epochs=2, micro_batch_size=4)
    cfg = RLConfig(algo=algo, batch_size=8, mini_batch_size=8, learning_rate=LR, max_new_tokens=5, init_kl_coef=0.05,
                   target_kl=None, seed=0, **extra)
    rollouts = _rollouts(policy, tok, cfg)
    trainer = OnlineTrainer(policy, tok, _good_words, cfg, reference=frozen_copy(policy), chat=False)
    trainer.optimizer = torch.optim.SGD(trainer.trainable, lr=RL_SGD_LR)  # see the module's docstring
    dist = distributed.current()
    stats = [trainer.learn(_rows(ro, dist)) for ro in rollouts]
    keys = ("reward/score_mean", "reward/score_std", "advantages/mean", "advantages/std", "policy/grad_norm",
            "kl/k1_seq_mean", "policy/entropy")
    weights = _weights(policy)
    if trainer.value_head is not None:
        weights.update({f"value_head.{k}": v.detach().clone() for k, v in trainer.value_head.named_parameters()})
    return [[s[k] for k in keys] for s in stats], weights


SCENARIOS = {"sft": _sft, "dpo": _dpo, "rm": _rm, "grpo": lambda tok: _rl(tok, "grpo"),
             "ppo": lambda tok: _rl(tok, "ppo")}


def _run_all() -> dict:
    return {name: fn(tiny_tokenizer()) for name, fn in SCENARIOS.items()}


def _resume_rl(folder: str) -> dict:
    """GRPO with sampling (each process draws its own samples): 4 steps in one go, against 2
    steps, a checkpoint, and a new trainer resumed from it for 2 more."""
    tok = tiny_tokenizer()

    def trainer(steps: int) -> OnlineTrainer:
        torch.manual_seed(0)
        policy = _model()
        cfg = RLConfig(algo="grpo", group_size=2, batch_size=8, mini_batch_size=8, learning_rate=LR, max_new_tokens=5,
                       init_kl_coef=0.05, target_kl=None, seed=0, steps=steps)
        return OnlineTrainer(policy, tok, _good_words, cfg, reference=frozen_copy(policy), chat=False)

    whole = trainer(4)
    whole.train(PROMPTS, progress=False)
    checkpointer = Checkpointer(os.path.join(folder, "checkpoints"), every=1)
    trainer(2).train(PROMPTS, progress=False, checkpointer=checkpointer)
    distributed.current().barrier()  # process 0 has written the checkpoint
    resumed = trainer(4)
    assert resumed.load_checkpoint(checkpointer) and resumed.step_count == 2
    resumed.train(PROMPTS, progress=False, checkpointer=checkpointer)

    def logged(history):
        return [{k: v for k, v in h.items() if not k.startswith("time/")} for h in history]

    return {"whole": (logged(whole.history), _weights(whole.policy)),
            "resumed": (logged(resumed.history), _weights(resumed.policy))}


def _worker(rank: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2", OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    distributed._CURRENT = None
    assert distributed.current().world == 2
    torch.save({**_run_all(), "resume": _resume_rl(folder)}, os.path.join(folder, f"rank{rank}.pt"))
    distributed.current().barrier()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> list[dict]:
    folder = tmp_path_factory.mktemp("ddp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # fork: the children start with this process's imports (a spawn would import torch and transformers again)
    mp.start_processes(_worker, args=(port, str(folder)), nprocs=2, join=True, start_method="fork")
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.fixture(scope="module")
def one_process() -> dict:
    assert distributed.current().world == 1
    return _run_all()


def _assert_close(one, two, name):
    losses_1, weights_1 = one[name]
    losses_2, weights_2 = two[name]
    assert torch.allclose(torch.tensor(losses_1, dtype=torch.float64), torch.tensor(losses_2, dtype=torch.float64),
                          rtol=1e-5, atol=1e-6), (losses_1, losses_2)
    moved = max((weights_1[k] - _INITIAL[name][k]).abs().max().item() for k in weights_1 if k in _INITIAL[name])
    assert moved > 1e-4  # training moved the weights (so equality below is not trivial)
    # The reward head's bias gets no gradient from a Bradley–Terry loss (it depends on score
    # differences only): its true gradient is 0, the computed one rounding noise (~1e-9), which
    # Adam's g/√v turns into steps of up to lr either way. It is left out of the comparison.
    compared = [k for k in weights_1 if not (name == "rm" and k == "head.bias")]
    worst, key = max(((weights_1[k] - weights_2[k]).abs().max().item(), k) for k in compared)
    assert worst < 1e-5, (worst, key)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_two_processes_equal_one(name, one_process, two_processes):
    rank0, rank1 = two_processes
    for key in rank0[name][1]:  # both processes hold the very same weights
        assert torch.equal(rank0[name][1][key], rank1[name][1][key]), key
    assert rank0[name][0] == rank1[name][0]  # and log the same statistics
    _assert_close(one_process, rank0, name)


_INITIAL = {name: {k: v for k, v in _weights(_model()).items()} for name in ("sft", "dpo", "grpo", "ppo")}
_INITIAL["rm"] = {f"backbone.{k}": v for k, v in _INITIAL["sft"].items()}


def test_two_processes_resume_as_if_never_stopped(two_processes):
    """--resume with N processes: each process's sampling generator and RNG come back from the
    checkpoint (process 0 wrote it), so the resumed run logs and ends exactly as the whole one."""
    for rank in two_processes:
        (whole_log, whole_weights), (resumed_log, resumed_weights) = rank["resume"]["whole"], rank["resume"]["resumed"]
        assert len(whole_log) == 4
        for a, b in zip(whole_log, resumed_log):
            assert a == b, sorted((k, a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k))
        for key in whole_weights:
            assert torch.equal(whole_weights[key], resumed_weights[key]), key
    for a, b in zip(two_processes[0]["resume"]["whole"][0], two_processes[1]["resume"]["whole"][0]):
        assert a == b, sorted((k, a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k))


def _process(rank: int, world: int, kind=None):
    """A `Distributed` for process `rank` of `world` on a stand-in for Accelerate's Accelerator
    (its four attributes that the layer reads; no process group is needed for what is tested)."""
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    return distributed.Distributed(SimpleNamespace(distributed_type=kind or DistributedType.MULTI_CPU,
                                                   num_processes=world, process_index=rank,
                                                   is_main_process=rank == 0))


def test_contiguous_shards_cover_the_batch_in_order():
    # 8 rows over 3 processes: 8 = 3·2 + 2, so the first two get 3 rows and the last 2
    assert [_process(r, 3).bounds(8) for r in range(3)] == [(0, 3), (3, 6), (6, 8)]
    assert [_process(r, 2).shard(list("abcd")) for r in range(2)] == [["a", "b"], ["c", "d"]]
    assert distributed.SINGLE.shard(list("abc")) == list("abc") and distributed.SINGLE.bounds(5) == (0, 5)


@pytest.mark.parametrize("kind", ["FSDP", "DEEPSPEED"])
def test_sharded_parameter_launches_are_refused_with_a_reason(kind):
    from accelerate.utils import DistributedType

    from rlhfkit.config import ConfigError

    with pytest.raises(ConfigError, match=f"accelerate launch with {kind}.*examples/accelerate/ddp.yaml"):
        _process(0, 2, DistributedType[kind])


def test_cpu_launch_of_several_processes_that_starts_one_says_so(monkeypatch, capsys):
    # what `accelerate launch --cpu --num_processes 2` sets for its single process (accelerate 1.16,
    # utils/launch.py: MASTER_ADDR only for num_processes > 1, no WORLD_SIZE without mpirun)
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setattr(distributed, "_CURRENT", None)
    assert distributed.current() is distributed.SINGLE
    assert "--multi_gpu --num_processes N" in capsys.readouterr().err
    monkeypatch.delenv("MASTER_ADDR")  # `--cpu` with one process: nothing to say
    monkeypatch.setattr(distributed, "_CURRENT", None)
    assert distributed.current() is distributed.SINGLE and capsys.readouterr().err == ""
