"""`rlhfkit eval sample | winrate | leaderboard | metrics`: the run drivers of evaluation.

An eval run folder (runs/eval by default) holds samples/<policy>.jsonl (+ .meta.json with the
settings they were drawn with, so judging never resamples), summary.json (policies, win rates,
leaderboard, metrics: each command adds its part) and report.html, rebuilt after each command.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from pathlib import Path

from rlhfkit.config import ConfigError
from rlhfkit.data.loaders import iter_rows, load_records, write_jsonl
from rlhfkit.data.schemas import DataError, RowError
from rlhfkit.evaluation.judges import build_judge
from rlhfkit.evaluation.leaderboard import (
    battles_from_preferences,
    format_leaderboard,
    leaderboard,
    load_battles,
    schedule_pairs,
)
from rlhfkit.evaluation.perplexity import perplexity
from rlhfkit.evaluation.report import write_report
from rlhfkit.evaluation.stats import mean_ci
from rlhfkit.evaluation.text_metrics import diversity, lexical
from rlhfkit.evaluation.winrate import pair_by_prompt, win_rate
from rlhfkit.generation.backends import HFBackend, make_backend
from rlhfkit.generation.sampling import SamplingParams
from rlhfkit.models import load_policy, resolve_device, resolve_precision
from rlhfkit.models.loading import autocast_context, cache_dir, load_tokenizer
from rlhfkit.pipelines.common import apply_task_defaults
from rlhfkit.pipelines.eval_config import (
    EvalSampleConfig,
    LeaderboardConfig,
    MetricsConfig,
    WinrateConfig,
)
from rlhfkit.pipelines.generate import keep_best
from rlhfkit.pipelines.run_dir import RunDir, write_json_atomic
from rlhfkit.rewards.spec import build_reward
from rlhfkit.tasks import get_task
from rlhfkit.tasks.registry import task_gold_scorer

# ---------------------------------------------------------------------------------------------
# sample files


def load_samples(spec: str) -> tuple[list[dict], str]:
    """Rows {prompt, response, ...} of FILE, FILE#COLUMN (that column is the response) or
    FILE#POLICY (rows whose method/policy field is POLICY). Returns (rows, label)."""
    path, _, select = spec.partition("#")
    if not Path(path).is_file():
        raise FileNotFoundError(f"sample file {path} does not exist")
    rows = []
    for rowno, row in iter_rows(path):
        where = f"{path}: row {rowno}"
        if isinstance(row, RowError):
            raise DataError(f"{where}: field '{row.field}': {row.reason}")
        if not isinstance(row, dict):
            raise DataError(f"{where}: field '(row)': expected an object with prompt and response")
        if select and select not in row:
            if (row.get("method") or row.get("policy")) != select:
                continue
            column = "response"
        else:
            column = select or "response"
        for name in ("prompt", column):
            if not isinstance(row.get(name), str):
                reason = "missing" if row.get(name) is None else f"expected text, got {row.get(name)!r:.60}"
                raise DataError(f"{where}: field '{name}': {reason}")
        rows.append({**row, "response": row[column]})
    if not rows:
        raise DataError(f"{spec}: no samples" + (f" (no rows with a '{select}' column or method/policy {select!r})" if select else ""))
    return rows, select or Path(path).stem


def resolve_samples(spec: str, run_dir: str = "") -> tuple[list[dict], str]:
    """`spec` as a file, or as a policy name of the eval run folder `run_dir`."""
    if run_dir and not Path(spec.partition("#")[0]).is_file():
        candidate = Path(run_dir) / "samples" / f"{spec}.jsonl"
        if not candidate.is_file():
            known = sorted(p.stem for p in (Path(run_dir) / "samples").glob("*.jsonl"))
            raise FileNotFoundError(f"{spec} is neither a sample file nor a policy of {run_dir} "
                                    f"(its policies: {', '.join(known) or 'none yet; run `rlhfkit eval sample`'})")
        return load_samples(str(candidate))[0], spec
    return load_samples(spec)


def update_summary(run_dir: str | Path, update) -> dict:
    """Read the eval run's summary.json, apply `update(summary)`, write it back atomically, rebuild the report."""
    path = Path(run_dir) / "summary.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    summary.setdefault("command", "eval")
    update(summary)
    write_json_atomic(path, summary)
    write_report(run_dir)
    return summary


def _emit(result: dict, as_json: bool, text: str) -> None:
    print(json.dumps(result, indent=2, ensure_ascii=False) if as_json else text)


# ---------------------------------------------------------------------------------------------
# eval sample


def split_best_of_n(spec: str) -> tuple[str, str, str]:
    """best_of_n:POLICY:N:REWARD → (POLICY, N, REWARD); REWARD may hold colons (task:NAME, mod:fn)."""
    found = re.fullmatch(r"best_of_n:(.+?):(\w+):(.+)", spec)
    if found is None:
        raise ConfigError(f"policy {spec!r}: expected best_of_n:POLICY:N:REWARD")
    return found.group(1), found.group(2), found.group(3)


def parse_policy(spec: str) -> tuple[str, str]:
    """NAME=SPEC or SPEC → (name, spec); a name is derived from the spec when not given."""
    name, eq, rest = spec.partition("=")
    if eq and name and not any(c in name for c in "/:\\."):
        return name, rest
    if spec.startswith("best_of_n:"):
        _, n, _ = split_best_of_n(spec)
        return f"best_of_{n}", spec
    return Path(spec.rstrip("/")).name or spec, spec


def _policy_path(spec: str) -> str:
    """A run folder stands for its final checkpoint."""
    final = Path(spec) / "checkpoints" / "final"
    return str(final) if final.is_dir() else spec


def _sampler(cfg: EvalSampleConfig, spec: str, device, dtype):
    """The rollout backend that samples policy `spec`: hf loads it here; openai asks --base-url for
    the model named `spec`; vllm loads it into a colocated engine."""
    import torch

    if cfg.rollout_backend == "hf":
        model, tokenizer = load_policy(_policy_path(spec), device=device)
        return HFBackend(model, tokenizer, dtype, torch.Generator(device=device).manual_seed(cfg.seed))
    tokenizer = load_tokenizer(_policy_path(spec)) if cfg.rollout_backend == "vllm" else None
    name = _policy_path(spec) if cfg.rollout_backend == "vllm" else spec
    return make_backend(cfg, name, tokenizer=tokenizer, device=device, seed=cfg.seed)


def _sample_policy(cfg: EvalSampleConfig, spec: str, prompts: list[str], chat, device, dtype) -> list[str]:
    """One response per prompt and sample; for best_of_n:POLICY:N:REWARD the best of N candidates."""
    params = SamplingParams(strategy="top_p" if cfg.top_p < 1 else "sample", temperature=cfg.temperature,
                            top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens)
    expanded = [p for p in prompts for _ in range(cfg.samples_per_prompt)]
    n, reward_fn, base, progress = 1, None, spec, f"sampling {spec}"
    if spec.startswith("best_of_n:"):
        base, n_text, reward = split_best_of_n(spec)
        if not n_text.isdigit() or int(n_text) < 1:
            raise ConfigError(f"policy {spec!r}: N must be a positive whole number, got {n_text!r}")
        reward_fn, _ = build_reward(reward, _task(cfg.task), device, named={"task": task_gold_scorer})
        n, progress = int(n_text), f"best-of-{n_text}"
    backend = _sampler(cfg, base, device, dtype)
    candidates = [p for p in expanded for _ in range(n)]
    rows = backend.responses(candidates, params, chat, batch_size=cfg.batch_size, progress=progress, seed=cfg.seed)
    if reward_fn is not None:
        rows = keep_best(rows, n, reward_fn)  # the candidate the reward scores best (the first on ties)
    return [r["response"] for r in rows]


def _task(name: str):
    if not name or name == "none":
        return None
    try:
        return get_task(name)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _eval_prompts(cfg: EvalSampleConfig, task) -> list[str]:
    if cfg.prompts:
        prompts = [r.prompt for r in load_records(cfg.prompts, "prompt").records]
    elif task is not None:
        prompts = task.prompts("test", seed=cfg.seed)
    else:
        raise ConfigError("give --prompts FILE or a built-in --task for the prompts")
    return prompts[: cfg.n_prompts] if cfg.n_prompts else prompts


def run_sample(cfg: EvalSampleConfig) -> dict:
    """Sample every policy of `cfg` on the same prompts (reusing samples drawn with the same settings)."""
    task = _task(cfg.task)
    apply_task_defaults(cfg, task)
    prompts = _eval_prompts(cfg, task)
    named = [parse_policy(p) for p in cfg.policies]
    names = [n for n, _ in named]
    if len(set(names)) < len(names):
        raise ConfigError(f"policy names must differ, got {', '.join(names)}; name them NAME=SPEC")
    run_path = Path(cfg.output_dir) / cfg.run_name
    # the folder is shared by the eval commands, so it is always reused; --resume insists that it exists.
    # Each policy's samples are written whole (temp file + rename), then their settings: a killed run
    # leaves every policy either finished (kept) or absent (sampled again)
    run = RunDir(cfg.output_dir, cfg.run_name, resume=cfg.resume or run_path.exists())
    run.save_config(cfg)
    (run.path / "samples").mkdir(exist_ok=True)
    device = resolve_device(cfg.device)
    dtype = resolve_precision(cfg.precision, device)
    chat = {"yes": True, "no": False, "auto": task.chat if task is not None and not cfg.prompts else None}[cfg.chat]
    settings = {k: getattr(cfg, k) for k in ("samples_per_prompt", "max_new_tokens", "temperature", "top_p", "seed", "chat")}
    if cfg.rollout_backend != "hf":  # samples from elsewhere are not those of the local sampler
        settings.update(rollout_backend=cfg.rollout_backend, base_url=cfg.base_url)
    settings["prompts_sha256"] = hashlib.sha256(json.dumps(prompts).encode()).hexdigest()
    policies = {}
    for name, spec in named:
        out, meta = run.path / "samples" / f"{name}.jsonl", run.path / "samples" / f"{name}.meta.json"
        wanted = {"spec": spec, **settings}
        cached = not cfg.resample and out.exists() and meta.exists() and json.loads(meta.read_text()) == wanted
        start = time.perf_counter()
        if cached:
            rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
        else:
            texts = _sample_policy(cfg, spec, prompts, chat, device, dtype)
            expanded = [p for p in prompts for _ in range(cfg.samples_per_prompt)]
            gold = task.gold(expanded, texts) if task is not None and not cfg.prompts else [None] * len(texts)
            rows = [{"policy": name, "prompt": p, "sample": i % cfg.samples_per_prompt, "response": t,
                     **({"gold": g} if g is not None else {})} for i, (p, t, g) in enumerate(zip(expanded, texts, gold))]

            write_jsonl(out, rows)
            write_json_atomic(meta, wanted)
        seconds = round(time.perf_counter() - start, 2)
        gold_values = [r["gold"] for r in rows if "gold" in r]
        policies[name] = {"spec": spec, "file": str(out), "rows": len(rows), "cached": cached, "seconds": seconds,
                          **({"gold": mean_ci(gold_values, cfg.seed)} if gold_values else {})}
        print(f"[rlhfkit] {name}: {len(rows)} samples {'(cached)' if cached else f'in {seconds:.0f}s'} → {out}")
    update_summary(run.path, lambda s: s.setdefault("policies", {}).update(policies) or s.update(task=cfg.task))
    return policies


# ---------------------------------------------------------------------------------------------
# judging


def _cache(spec: str):
    if spec == "off":
        return None
    if spec == "auto":
        return str(cache_dir() / "judgements.sqlite")
    return spec


def make_judge(cfg):
    """The judge of a WinrateConfig / LeaderboardConfig."""
    needs_model = cfg.judge.startswith(("ai", "judge")) or Path(cfg.judge).is_dir()
    device = str(resolve_device(cfg.device)) if needs_model else "cpu"
    return build_judge(cfg.judge, _task(cfg.task), device=device, preamble=cfg.judge_preamble, tie_margin=cfg.tie_margin,
                       cache=_cache(cfg.cache), batch_size=cfg.judge_batch_size, precision=cfg.precision)


def judged_win_rate(judge, prompts, responses_a, responses_b, n_resamples: int = 2000, seed: int = 0) -> dict:
    """P(A ≻ B) per pair from `judge`, then `evaluation.winrate.win_rate` (lengths in words)."""
    start = time.perf_counter()
    preferences = judge.prefer(prompts, responses_a, responses_b)
    seconds = time.perf_counter() - start
    result = win_rate(preferences, prompts, [len(a.split()) for a in responses_a], [len(b.split()) for b in responses_b],
                      n_resamples=n_resamples, seed=seed)
    result.update(judge=judge.name, judge_seconds=round(seconds, 3),
                  seconds_per_100_pairs=round(100 * seconds / max(len(prompts), 1), 3))
    if getattr(judge, "last_same_position_rate", None) is not None:
        result["same_position_rate"] = judge.last_same_position_rate
    return result


def format_win_rate(r: dict) -> str:
    lc = f"{r['lc_win_rate']:.1%}" if r.get("lc_win_rate") is not None else "-"
    lines = [f"win rate of {r['a']} over {r['b']} (judge {r['judge']}): {r['win_rate']:.1%} "
             f"[{r['ci_low']:.1%}, {r['ci_high']:.1%}] (95% CI, paired bootstrap over {r['prompts']} prompts)",
             f"  wins / ties / losses: {r['wins']} / {r['ties']} / {r['losses']} of {r['n']} pairs; "
             f"length-controlled win rate {lc}",
             f"  mean length (words): {r['a']} {r['mean_length_a']:.1f}, {r['b']} {r['mean_length_b']:.1f}; "
             f"judged in {r['judge_seconds']:.1f}s ({r['seconds_per_100_pairs']:.2f}s per 100 pairs)"]
    if r.get("same_position_rate") is not None:
        lines.append(f"  judge chose the same position in both orders for {r['same_position_rate']:.0%} of pairs")
    if r.get("unpaired") and any(r["unpaired"].values()):
        lines.append(f"  rows without a partner (left out): {r['a']} {r['unpaired']['a']}, {r['b']} {r['unpaired']['b']}")
    return "\n".join(lines)


def run_winrate(cfg: WinrateConfig) -> dict:
    rows_a, label_a = resolve_samples(cfg.a, cfg.run_dir)
    rows_b, label_b = resolve_samples(cfg.b, cfg.run_dir)
    if label_a == label_b:
        label_a, label_b = cfg.a, cfg.b
    prompts, texts_a, texts_b, unpaired = pair_by_prompt(rows_a, rows_b, cfg.a, cfg.b)
    result = judged_win_rate(make_judge(cfg), prompts, texts_a, texts_b, cfg.bootstrap, cfg.seed)
    result.update(a=label_a, b=label_b, unpaired=unpaired)
    if cfg.run_dir:
        def add(summary):
            keep = [w for w in summary.get("win_rates", []) if (w["a"], w["b"], w["judge"]) != (label_a, label_b, cfg.judge)]
            summary["win_rates"] = keep + [result]

        update_summary(cfg.run_dir, add)
    public = ("win_rate", "ci_low", "ci_high", "wins", "ties", "losses", "n", "lc_win_rate", "a", "b", "judge",
              "prompts", "mean_length_a", "mean_length_b")
    _emit({k: result[k] for k in public}, cfg.json, format_win_rate(result))
    return result


# ---------------------------------------------------------------------------------------------
# eval leaderboard


def _aligned_samples(run_dir: str, names: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """The prompts every policy answered (k-th response to a prompt matched with the k-th) and
    each policy's responses in that order."""
    by_policy = {}
    for name in names:
        rows, _ = resolve_samples(name, run_dir)
        seen: dict[str, int] = {}
        keyed = {}
        for row in rows:
            k = seen.get(row["prompt"], 0)
            seen[row["prompt"]] = k + 1
            keyed[(row["prompt"], k)] = row["response"]
        by_policy[name] = keyed
    common = [key for key in by_policy[names[0]] if all(key in by_policy[n] for n in names[1:])]
    if not common:
        raise DataError(f"the policies {', '.join(names)} of {run_dir} share no prompt")
    return [p for p, _ in common], {n: [by_policy[n][key] for key in common] for n in names}


def judge_battles(judge, prompts: list[str], responses: dict[str, list[str]], schedule: str = "round_robin",
                  pairs_per_prompt: int = 1, seed: int = 0) -> list[dict]:
    """Battles among the policies of `responses` (aligned on `prompts`), judged by `judge`.
    A scoring judge scores each policy's responses once; an AI judge sees each scheduled pair."""
    plan = schedule_pairs(list(responses), schedule, pairs_per_prompt, len(prompts), seed)
    by_pair: dict[tuple[str, str], list[int]] = {}
    for i, a, b in plan:
        by_pair.setdefault((a, b), []).append(i)
    scores = {n: judge.scores(prompts, texts) for n, texts in responses.items()} if hasattr(judge, "scores") else None
    battles = []
    for (a, b), idx in by_pair.items():
        if scores is not None:
            prefs = judge.prefer_scores([scores[a][i] for i in idx], [scores[b][i] for i in idx])
        else:
            prefs = judge.prefer([prompts[i] for i in idx], [responses[a][i] for i in idx], [responses[b][i] for i in idx])
        battles += battles_from_preferences(a, b, [prompts[i] for i in idx], prefs)
    return battles


def run_leaderboard(cfg: LeaderboardConfig) -> dict:
    if cfg.battles:
        battles = load_battles(cfg.battles)
        source = cfg.battles
    else:
        names = cfg.policies or sorted(p.stem for p in (Path(cfg.run_dir) / "samples").glob("*.jsonl"))
        if len(names) < 2:
            raise ConfigError(f"{cfg.run_dir} holds samples of {len(names)} policies; a leaderboard needs at least 2 "
                              "(run `rlhfkit eval sample --policies A,B,C --run-name ...` first)")
        prompts, responses = _aligned_samples(cfg.run_dir, names)
        start = time.perf_counter()
        battles = judge_battles(make_judge(cfg), prompts, responses, cfg.schedule, cfg.pairs_per_prompt, cfg.seed)
        print(f"[rlhfkit] {len(battles)} battles judged by {cfg.judge} in {time.perf_counter() - start:.1f}s",
              file=sys.stderr)  # stdout: the result only (--json)
        write_jsonl(Path(cfg.run_dir) / "battles.jsonl", battles)
        source = f"{cfg.run_dir} ({cfg.judge})"
    board = leaderboard(battles, n_resamples=cfg.bootstrap, seed=cfg.seed, elo_k=cfg.elo_k)
    board["judge"] = cfg.judge if not cfg.battles else f"battles file {cfg.battles}"
    if cfg.run_dir:
        update_summary(cfg.run_dir, lambda s: s.update(leaderboard=board))
    public = {"ratings": {n: {k: r[k] for k in ("rating", "ci_low", "ci_high", "battles")} for n, r in board["ratings"].items()},
              "elo": board["elo"], "win_matrix": board["win_matrix"]}
    _emit(public, cfg.json, f"leaderboard from {board['battles']} battles of {source}\n{format_leaderboard(board)}")
    return board


# ---------------------------------------------------------------------------------------------
# eval metrics


def _references(cfg: MetricsConfig, rows: list[dict]) -> list[list[str]] | None:
    """References per sample row: from the rows themselves or from --references, by prompt."""
    by_prompt: dict[str, list[str]] = {}
    if cfg.references:
        for rowno, row in iter_rows(cfg.references):
            where = f"{cfg.references}: row {rowno}"
            if isinstance(row, RowError):
                raise DataError(f"{where}: field '{row.field}': {row.reason}")
            refs = row.get("references", row.get("reference")) if isinstance(row, dict) else None
            refs = [refs] if isinstance(refs, str) else refs
            if not isinstance(row.get("prompt"), str) or not refs or not all(isinstance(r, str) for r in refs):
                field = "prompt" if not isinstance(row.get("prompt"), str) else "reference"
                raise DataError(f"{where}: field '{field}': expected a prompt and a reference text (or references list)")
            by_prompt.setdefault(row["prompt"], []).extend(refs)
    out = []
    for i, row in enumerate(rows, start=1):
        own = row.get("references", row.get("reference"))
        refs = ([own] if isinstance(own, str) else list(own or [])) + by_prompt.get(row["prompt"], [])
        if not refs:
            if cfg.references or out:
                raise DataError(f"{cfg.samples}: sample {i} (prompt {row['prompt']!r:.60}) has no reference")
            return None
        out.append(refs)
    return out


def _perplexity(cfg: MetricsConfig, prompts: list[str], responses: list[str], task) -> dict:
    device = resolve_device(cfg.device)
    dtype = resolve_precision(cfg.precision, device)
    model, tokenizer = load_policy(cfg.reference_model, device=device)
    chat = {"yes": True, "no": False, "auto": task.chat if task is not None else None}[cfg.chat]
    with autocast_context(device, dtype):
        return perplexity(model, tokenizer, prompts, responses, chat=chat, batch_size=cfg.batch_size)


def run_metrics(cfg: MetricsConfig) -> dict:
    rows, label = resolve_samples(cfg.samples, cfg.run_dir)
    prompts, responses = [r["prompt"] for r in rows], [r["response"] for r in rows]
    task = _task(cfg.task)
    result: dict = {"samples": len(rows), **diversity(responses)}
    references = _references(cfg, rows)
    if references is None and task is not None and task.reference_column:
        references = task.references(prompts)  # a task's own references (summarize: each docstring's first line)
        references = references if all(references) else None
    if references is not None:
        result.update(lexical(responses, references))
    if task is not None:
        result["gold"] = mean_ci(task.gold(prompts, responses), cfg.seed)
    if cfg.reference_model and cfg.reference_model != "none":
        result.update(_perplexity(cfg, prompts, responses, task))
        result["reference_model"] = cfg.reference_model
    if cfg.run_dir:
        update_summary(cfg.run_dir, lambda s: s.setdefault("metrics", {}).update({label: result}))
    lines = [f"metrics of {label} ({len(rows)} samples)"]
    for key, value in result.items():
        if isinstance(value, dict):
            lines.append(f"  {key:22s} {value['mean']:+.4f} [{value['ci_low']:+.4f}, {value['ci_high']:+.4f}]")
        elif isinstance(value, float):
            lines.append(f"  {key:22s} {value:.4f}")
    if references is None:
        lines.append("  (no references: BLEU, ROUGE and METEOR need --references or reference fields)")
    _emit(result, cfg.json, "\n".join(lines))
    return result
