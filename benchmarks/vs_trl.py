"""rlhfkit vs TRL on the same CPU, side by side: GRPO, RLOO, DPO (and PPO) steps on one tiny GPT-2.

    .venv/bin/python benchmarks/vs_trl.py [--jobs grpo,rloo,dpo,ppo] [--precision fp32,bf16]
        [--steps 10] [--warmup 2] [--repeats 3] [--threads 1] [--json results.json]
        [--trl112-python /work/trl112-venv/bin/python]

Needs TRL 1.16 (`pip install -e ".[bench]"`). Everything is built in code, nothing is
downloaded: a GPT-2 of 4 layers, 256 wide, vocabulary 4096, dropout 0 (4.27 M parameters) over
a word-level tokenizer of made-up syllable words; 16-word prompts; reward = the fraction of the
letter "e" among the completion's letters. Online jobs (issue 12's config): 8 prompts × 8
completions × 48 new tokens per step, full fine-tuning, one on-policy update per batch, lr 5e-4,
constant schedule, β = 0 for GRPO (TRL's default) and 0.05 for RLOO (TRL's default); both
libraries minimise the same token-mean loss. DPO: 512 pairs (48-word completions, the chosen
one rich in "e"), batch 16, β 0.1, a live reference model (no precomputed log-probs).
PPO: TRL 1.16 has no PPOTrainer; the last TRL with one (`trl.experimental.ppo`, checked in the
wheels of 1.12 and 1.16) is 1.12, which runs from its own virtualenv (`--trl112-python`:
python3 -m venv DIR; DIR/bin/pip install torch==2.13.0; DIR/bin/pip install "trl==1.12.*").
Its reward is a model (a tiny GPT-2 classifier built in code, the same for both libraries, its
score at the last token), 64 prompts × 48 new tokens per step, one PPO epoch of one mini-batch,
β 0.05 (k1 in the reward), lr 5e-4. TRL's critic is a separate model (initialised from the
reward model, its default); rlhfkit's is a value head on the policy.

Each (library, job, precision) run is its own subprocess, started in turn (TRL, rlhfkit, TRL,
rlhfkit, …) so that drift in the machine's speed hits both alike. A run reports its step times
(wall and process CPU seconds) after `--warmup` steps, stage times where the library exposes them (generate / no-grad passes /
update), its peak RSS and its reward (DPO: loss) per step. The summary gives medians over steps
and repeats and the speed ratio TRL time / rlhfkit time (> 1: rlhfkit is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VOCAB = 4096
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]
PROMPT_WORDS, COMPLETION_TOKENS, PROMPTS_PER_STEP, GROUP = 16, 48, 8, 8
DPO_PAIRS, DPO_BATCH = 512, 16
ONLINE_LR, DPO_LR = 5e-4, 1e-5
BETA = {"grpo": 0.0, "rloo": 0.05, "ppo": 0.05}
PPO_BATCH = 64


# --------------------------------------------------------------------------------------------
# model, tokenizer, data and reward: identical for both libraries


def words() -> list[str]:
    """VOCAB − 4 made-up words: consonant-vowel syllables, then pairs of them."""
    syllables = [c + v for c in "bcdfghklmnprstvwz" for v in "aeiou"]
    out = syllables + [a + b for a in syllables for b in syllables]
    return out[: VOCAB - len(SPECIALS)]


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + words())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                                   unk_token="<unk>")


def build_model(layers: int = 4, width: int = 256, seed: int = 0):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=VOCAB, n_embd=width, n_layer=layers, n_head=4, n_positions=256,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=0, eos_token_id=1, bos_token_id=2)
    model = GPT2LMHeadModel(config)
    model.generation_config.eos_token_id = 1
    model.generation_config.pad_token_id = 0
    return model


def build_reward_model(layers: int = 2, width: int = 256, seed: int = 3):
    """PPO's reward: a random tiny GPT-2 with a one-output score head (its logit at the last
    real token), identical for both libraries."""
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=VOCAB, n_embd=width, n_layer=layers, n_head=4, n_positions=256, num_labels=1,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=0, eos_token_id=1, bos_token_id=2)
    return GPT2ForSequenceClassification(config)


def e_fraction(prompts, completions, **_) -> list[float]:
    """The share of the letter "e" among the completion's letters."""
    out = []
    for text in completions:
        letters = [c for c in text if c.isalpha()]
        out.append(sum(c == "e" for c in letters) / max(len(letters), 1))
    return out


def prompts(n: int, seed: int = 1) -> list[str]:
    rng, vocab = random.Random(seed), words()
    return [" ".join(rng.choice(vocab) for _ in range(PROMPT_WORDS)) for _ in range(n)]


def dpo_pairs(seed: int = 2) -> list[dict]:
    rng, vocab = random.Random(seed), words()
    rich = [w for w in vocab if "e" in w]
    return [{"prompt": p,
             "chosen": " ".join(rng.choice(rich) for _ in range(COMPLETION_TOKENS)),
             "rejected": " ".join(rng.choice(vocab) for _ in range(COMPLETION_TOKENS))}
            for p in prompts(DPO_PAIRS, seed)]


def save_model(folder: Path, layers: int, width: int) -> str:
    """Model + tokenizer in a folder: TRL builds its reference model from the policy's path;
    the PPO reward model beside it in folder/reward."""
    build_model(layers, width).save_pretrained(folder)
    build_tokenizer().save_pretrained(folder)
    build_reward_model(max(1, layers // 2), width).save_pretrained(folder / "reward")
    return str(folder)


# --------------------------------------------------------------------------------------------
# one run = one subprocess


class Recorder:
    """Step start/end times, per-stage seconds and the per-step reward (or loss) of one run."""

    def __init__(self):
        self.steps: list[float] = []
        self.cpu: list[float] = []  # process CPU seconds per step: less moved by other load than wall time
        self.stages: dict[str, list[float]] = {}
        self.curve: list[float] = []
        self._t0 = self._c0 = 0.0

    def begin(self):
        self._t0, self._c0 = time.perf_counter(), time.process_time()

    def end(self):
        self.steps.append(time.perf_counter() - self._t0)
        self.cpu.append(time.process_time() - self._c0)

    def stage(self, name: str, seconds: float):
        self.stages.setdefault(name, []).append(seconds)

    def reward_fn(self, prompts, completions, **kw):
        scores = e_fraction(prompts, completions)
        self.curve.append(sum(scores) / len(scores))
        return scores


def _timed(rec: Recorder, name: str, fn):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        rec.stage(name, time.perf_counter() - t0)
        return out
    return wrapper


def ppo_prompts(steps: int) -> list[str]:
    return prompts(PPO_BATCH * steps, seed=4)


def run_trl_ppo(path: str, precision: str, steps: int, rec: Recorder, out_dir: str) -> None:
    """TRL 1.12's PPOTrainer (trl.experimental.ppo): its loop has a step-end callback only, so a
    step's time runs from the previous step's end (the first from the start of training)."""
    import copy
    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    class StepTimes(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            rec.begin()

        def on_step_end(self, args, state, control, **kw):
            rec.end()
            rec.begin()

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "objective/scores" in logs:
                rec.curve.append(float(logs["objective/scores"]))

    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    policy = AutoModelForCausalLM.from_pretrained(path)
    reward = AutoModelForSequenceClassification.from_pretrained(f"{path}/reward", num_labels=1)
    value = AutoModelForSequenceClassification.from_pretrained(f"{path}/reward", num_labels=1)
    data = Dataset.from_list([{"input_ids": tok(p, add_special_tokens=False)["input_ids"]} for p in ppo_prompts(steps)])
    cfg = PPOConfig(output_dir=out_dir, learning_rate=ONLINE_LR, lr_scheduler_type="constant", per_device_train_batch_size=PPO_BATCH,
                    gradient_accumulation_steps=1, num_mini_batches=1, num_ppo_epochs=1, total_episodes=PPO_BATCH * steps,
                    response_length=COMPLETION_TOKENS, temperature=1.0, kl_coef=BETA["ppo"], local_rollout_forward_batch_size=PPO_BATCH,
                    num_sample_generations=0, missing_eos_penalty=None, stop_token=None, logging_steps=1, report_to="none",
                    save_strategy="no", use_cpu=True, bf16=precision == "bf16", seed=0, disable_tqdm=True, max_grad_norm=1.0)
    trainer = PPOTrainer(args=cfg, processing_class=tok, model=policy, ref_model=copy.deepcopy(policy), reward_model=reward,
                         train_dataset=data, value_model=value, callbacks=[StepTimes()])
    trainer.train()
    rec.steps = rec.steps[:steps]
    rec.cpu = rec.cpu[:steps]


def rlhfkit_ppo_reward(path: str, rec: Recorder):
    """The reward model's score of prompt + completion (exact word-level round trip), for rlhfkit."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rm = AutoModelForSequenceClassification.from_pretrained(f"{path}/reward", num_labels=1).eval()
    tok = AutoTokenizer.from_pretrained(path, padding_side="right")

    @torch.no_grad()
    def score(prompts, completions, **_):
        batch = tok([f"{p} {c}".strip() for p, c in zip(prompts, completions)], padding=True, return_tensors="pt",
                    add_special_tokens=False)
        scores = rm(**batch).logits[:, 0].tolist()
        rec.curve.append(sum(scores) / len(scores))
        return scores
    return score


def run_trl(job: str, path: str, precision: str, steps: int, rec: Recorder, out_dir: str) -> None:
    if job == "ppo":
        return run_trl_ppo(path, precision, steps, rec, out_dir)
    from datasets import Dataset
    from transformers import TrainerCallback

    class StepTimes(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            rec.begin()

        def on_step_end(self, args, state, control, **kw):
            rec.end()

        def on_log(self, args, state, control, logs=None, **kw):
            if job == "dpo" and logs and "loss" in logs:
                rec.curve.append(float(logs["loss"]))

    common = dict(output_dir=out_dir, max_steps=steps, learning_rate=ONLINE_LR, lr_scheduler_type="constant",
                  warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, logging_steps=1, report_to="none",
                  save_strategy="no", use_cpu=True, bf16=precision == "bf16", dataloader_num_workers=0,
                  gradient_accumulation_steps=1, seed=0, disable_tqdm=True)
    if job == "dpo":
        from trl import DPOConfig, DPOTrainer

        cfg = DPOConfig(**{**common, "learning_rate": DPO_LR}, per_device_train_batch_size=DPO_BATCH, beta=0.1,
                        precompute_ref_log_probs=False, max_length=None)
        trainer = DPOTrainer(model=path, args=cfg, train_dataset=Dataset.from_list(dpo_pairs()),
                             callbacks=[StepTimes()])
    else:
        from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

        Config, Trainer = (GRPOConfig, GRPOTrainer) if job == "grpo" else (RLOOConfig, RLOOTrainer)
        batch = PROMPTS_PER_STEP * GROUP
        extra = {"loss_type": "dapo"} if job == "grpo" else {}
        cfg = Config(**common, per_device_train_batch_size=batch, generation_batch_size=batch, num_generations=GROUP,
                     max_completion_length=COMPLETION_TOKENS, beta=BETA[job], num_iterations=1, temperature=1.0,
                     top_p=1.0, top_k=0, shuffle_dataset=False, **extra)
        dataset = Dataset.from_list([{"prompt": p} for p in prompts(PROMPTS_PER_STEP * steps)])
        trainer = Trainer(model=path, reward_funcs=rec.reward_fn, args=cfg, train_dataset=dataset,
                          callbacks=[StepTimes()])
        trainer._generate = _timed(rec, "generate", trainer._generate)
        trainer._generate_and_score_completions = _timed(rec, "rollout", trainer._generate_and_score_completions)
    trainer.train()


def run_rlhfkit(job: str, path: str, precision: str, steps: int, rec: Recorder) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlhfkit.models.lora import frozen_copy

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    policy, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    reference = frozen_copy(policy)
    if job == "dpo":
        from rlhfkit.data.collators import tokenize_pairs
        from rlhfkit.trainers.config import DPOConfig
        from rlhfkit.trainers.dpo import DPOTrainer
        from rlhfkit.types import PairwiseRecord

        cfg = DPOConfig(batch_size=DPO_BATCH, micro_batch_size=DPO_BATCH, learning_rate=DPO_LR, lr_scheduler="constant",
                        beta=0.1, precompute_ref=False, lora=False, max_steps=steps)
        trainer = DPOTrainer(policy, tok, cfg, total_steps=steps, reference=reference, compute_dtype=dtype)
        pairs = [PairwiseRecord(**p) for p in dpo_pairs()]
        items = trainer.prepare(tokenize_pairs(tok, pairs, chat=False))
        for i in range(steps):
            start = (i * DPO_BATCH) % len(items)
            rec.begin()
            stats = trainer.step(items[start : start + DPO_BATCH])
            rec.end()
            rec.curve.append(stats["loss"])
        return
    from rlhfkit.trainers.config import RLConfig
    from rlhfkit.trainers.online import OnlineTrainer

    batch, group = (PPO_BATCH, 1) if job == "ppo" else (PROMPTS_PER_STEP * GROUP, GROUP)
    per_step = batch // group
    cfg = RLConfig(algo=job, steps=steps, batch_size=batch, group_size=group, mini_batch_size=batch,
                   micro_batch_size=batch, ppo_epochs=1, max_new_tokens=COMPLETION_TOKENS, init_kl_coef=BETA[job],
                   target_kl=None, learning_rate=ONLINE_LR, max_grad_norm=1.0, loss_aggregation="token_mean", seed=0)
    reward_fn = rlhfkit_ppo_reward(path, rec) if job == "ppo" else rec.reward_fn
    trainer = OnlineTrainer(policy, tok, reward_fn, cfg, reference=reference, compute_dtype=dtype, chat=False)
    all_prompts = ppo_prompts(steps) if job == "ppo" else prompts(PROMPTS_PER_STEP * steps)
    for i in range(steps):
        rec.begin()
        stats = trainer.step(all_prompts[i * per_step : (i + 1) * per_step])
        rec.end()
        rec.stage("generate", stats["time/generate"])
        rec.stage("no-grad passes", stats["time/forward"])
        rec.stage("update", stats["time/update"])


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    rec = Recorder()
    with tempfile.TemporaryDirectory() as tmp:
        path = save_model(Path(tmp) / "model", args.layers, args.width)
        if args.lib == "trl":
            run_trl(args.job, path, args.precision_one, args.steps + args.warmup, rec, str(Path(tmp) / "out"))
        else:
            run_rlhfkit(args.job, path, args.precision_one, args.steps + args.warmup, rec)
    stages = {k: v for k, v in rec.stages.items()}
    if "rollout" in stages:  # TRL: the no-grad passes and scoring = rollout − generate
        stages["no-grad passes"] = [r - g for r, g in zip(stages.pop("rollout"), stages["generate"])]
    if args.lib == "trl" and "no-grad passes" in stages:
        stages["update"] = [s - g - n for s, g, n in zip(rec.steps, stages["generate"], stages["no-grad passes"])]
    w = args.warmup
    result = {"lib": args.lib, "job": args.job, "precision": args.precision_one, "step_s": rec.steps[w:], "cpu_s": rec.cpu[w:],
              "stages_s": {k: v[w:] for k, v in stages.items()}, "curve": rec.curve,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------
# the driver: interleaved subprocesses and the summary


def run_one(lib: str, job: str, precision: str, args) -> dict:
    python = args.trl112_python if (lib == "trl" and job == "ppo") else sys.executable
    cmd = [python, __file__, "--worker", lib, "--job", job, "--precision-one", precision,
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
           "--layers", str(args.layers), "--width", str(args.width)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{lib} {job} {precision} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def _median(xs):
    return statistics.median(xs) if xs else float("nan")


def summarise(runs: list[dict]) -> dict:
    """Per library: median step seconds (over all steps of all repeats), median stage seconds,
    the largest peak RSS and the mean curve; and the ratio TRL / rlhfkit."""
    out = {}
    for lib in ("trl", "rlhfkit"):
        mine = [r for r in runs if r["lib"] == lib]
        stages = sorted({k for r in mine for k in r["stages_s"]})
        curves = [r["curve"] for r in mine]
        out[lib] = {
            "step_s": _median([s for r in mine for s in r["step_s"]]),
            "cpu_s": _median([s for r in mine for s in r["cpu_s"]]),
            "per_repeat_step_s": [_median(r["step_s"]) for r in mine],
            "stages_s": {k: _median([s for r in mine for s in r["stages_s"].get(k, [])]) for k in stages},
            "peak_rss_mb": max(r["peak_rss_mb"] for r in mine),
            "curve": [sum(c[i] for c in curves) / len(curves) for i in range(min(len(c) for c in curves))],
        }
    out["speed_ratio"] = out["trl"]["step_s"] / out["rlhfkit"]["step_s"]
    out["cpu_ratio"] = out["trl"]["cpu_s"] / out["rlhfkit"]["cpu_s"]
    out["per_repeat_ratio"] = [t / k for t, k in zip(out["trl"]["per_repeat_step_s"], out["rlhfkit"]["per_repeat_step_s"])]
    return out


def print_summary(job: str, precision: str, s: dict) -> None:
    print(f"\n== {job.upper()} {precision} ==")
    for lib in ("trl", "rlhfkit"):
        r = s[lib]
        stages = "  ".join(f"{k} {v:.2f}" for k, v in r["stages_s"].items())
        print(f"  {lib:8s} step {r['step_s']:.3f} s, CPU {r['cpu_s']:.3f} s (repeats: {', '.join(f'{x:.2f}' for x in r['per_repeat_step_s'])})"
              f"  peak RSS {r['peak_rss_mb']:.0f} MB  [{stages}]")
        print(f"  {'':8s} {'loss' if job == 'dpo' else 'reward'} per step: {' '.join(f'{x:.3f}' for x in r['curve'])}")
    print(f"  speed ratio TRL / rlhfkit: {s['speed_ratio']:.2f}x wall, {s['cpu_ratio']:.2f}x CPU  "
          f"(per repeat: {', '.join(f'{x:.2f}' for x in s['per_repeat_ratio'])})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", default="grpo,rloo,dpo", help="comma-separated: grpo, rloo, dpo, ppo (ppo needs --trl112-python)")
    parser.add_argument("--trl112-python", default="", help="python of a virtualenv with TRL 1.12 (the last TRL with PPOTrainer), for the ppo job")
    parser.add_argument("--precision", default="fp32,bf16", help="comma-separated: fp32, bf16")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of each run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per library (interleaved)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each run")
    parser.add_argument("--json", default="", help="also write all runs and the summary to this file")
    parser.add_argument("--layers", type=int, default=4, help=argparse.SUPPRESS)  # smaller models for the test
    parser.add_argument("--width", type=int, default=256, help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=["trl", "rlhfkit"], help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--precision-one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.lib = args.worker
        return worker(args)
    jobs, precisions = args.jobs.split(","), args.precision.split(",")
    for name, given, allowed in (("--jobs", jobs, {"grpo", "rloo", "dpo", "ppo"}), ("--precision", precisions, {"fp32", "bf16"})):
        if not set(given) <= allowed:
            parser.error(f"{name} takes {', '.join(sorted(allowed))}, got {','.join(given)}")
    if "ppo" in jobs and not (args.trl112_python and Path(args.trl112_python).exists()):
        parser.error("the ppo job runs TRL 1.12 from its own virtualenv: pass --trl112-python DIR/bin/python")
    import torch
    import trl

    print(f"TRL {trl.__version__}, torch {torch.__version__}, {os.cpu_count()} CPUs, {args.threads} thread(s) per run, "
          f"{args.steps} timed steps after {args.warmup}, {args.repeats} repeats, {time.strftime('%Y-%m-%d')}", flush=True)
    report = {"args": vars(args), "results": {}}
    for job in jobs:
        for precision in precisions:
            runs = []
            for i in range(args.repeats):
                for lib in ("trl", "rlhfkit"):
                    runs.append(run_one(lib, job, precision, args))
                    print(f"  {job} {precision} repeat {i + 1} {lib}: median step {_median(runs[-1]['step_s']):.3f} s",
                          flush=True)
            summary = summarise(runs)
            print_summary(job, precision, summary)
            report["results"][f"{job}/{precision}"] = {"summary": summary, "runs": runs}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
