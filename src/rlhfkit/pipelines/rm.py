"""`rlhfkit rm`: files → split → train (`trainers.reward`) → centre → evaluate → run folder."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from rlhfkit.config import ConfigError, parse_report_to
from rlhfkit.data.loaders import iter_rows, load_records
from rlhfkit.data.schemas import DataError, RowError
from rlhfkit.evaluation.report import write_report
from rlhfkit.models import load_reward_model, resolve_device
from rlhfkit.models.heads import RewardEnsemble, RewardModel
from rlhfkit.pipelines.run_dir import RunDir
from rlhfkit.trainers.distributed import process_device
from rlhfkit.models.process_reward import ProcessRewardModel
from rlhfkit.trainers.reward import LABEL_TYPES, StepwiseLabels, evaluate_records, train_reward_model


def split_by_prompt(records: Sequence[Any], fraction: float, seed: int = 0) -> tuple[list[Any], list[Any]]:
    """Hold out about `fraction` of the records, whole prompts at a time (so no prompt is in
    both halves, and the held-out prompts keep all their responses for comparisons). With a
    single distinct prompt, records are split one by one. -> (train, held out)."""
    if fraction <= 0:
        return list(records), []
    rng = random.Random(seed)
    target = max(1, round(fraction * len(records)))
    prompts = list(dict.fromkeys(r.prompt for r in records))
    if len(prompts) >= 2:
        rng.shuffle(prompts)
        held: set[str] = set()
        count = {p: 0 for p in prompts}
        for r in records:
            count[r.prompt] += 1
        total = 0
        for p in prompts[:-1]:  # always leave at least one prompt to train on
            if total >= target:
                break
            held.add(p)
            total += count[p]
        return [r for r in records if r.prompt not in held], [r for r in records if r.prompt in held]
    index = list(range(len(records)))
    rng.shuffle(index)
    held_index = set(index[:target])
    return ([r for i, r in enumerate(records) if i not in held_index],
            [r for i, r in enumerate(records) if i in held_index])


def load_reference_responses(path: str | Path) -> tuple[list[str], list[str]]:
    """(prompts, responses) from a file whose rows have `prompt` and `response` (e.g. the output
    of `rlhfkit generate`, or a rating/thumbs file). Bad rows stop with file, row and field."""
    prompts, responses = [], []
    for rowno, row in iter_rows(path):
        where = f"{path}: row {rowno}"
        if isinstance(row, RowError):
            raise DataError(f"{where}: field '{row.field}': {row.reason}")
        if not isinstance(row, dict):
            raise DataError(f"{where}: field '(row)': expected an object with named fields")
        for name in ("prompt", "response"):
            value = row.get(name)
            if not isinstance(value, str) or (name == "response" and not value.strip()):
                reason = "missing" if value is None else f"expected non-empty text, got {value!r:.60}"
                raise DataError(f"{where}: field '{name}': {reason}")
        prompts.append(row["prompt"])
        responses.append(row["response"])
    if not responses:
        raise DataError(f"{path}: no reference responses (rows need 'prompt' and 'response')")
    return prompts, responses


def with_members(rm: RewardModel, members: int, uncertainty_penalty: float = 0.0) -> RewardModel:
    """`rm` as a model of `members` heads: itself, or a fresh ensemble on its backbone."""
    if members == rm.members:
        if members > 1:
            rm.uncertainty_penalty = float(uncertainty_penalty)
        return rm
    if rm.members == 1:
        return RewardEnsemble.on_backbone_of(rm, members, uncertainty_penalty)
    raise ConfigError(f"{rm.source} is a saved ensemble of {rm.members} heads; pass --ensemble {rm.members} "
                      "to train it further (or start from its backbone folder)")


def _load_split(cfg, echo: Callable[[str], None]) -> tuple[list[Any], list[Any], dict[str, int]]:
    loaded = load_records(cfg.data, cfg.kind, skip_invalid=cfg.skip_invalid)
    counts = {"skipped_train": len(loaded.skipped), "skipped_eval": 0}
    for s in loaded.skipped[:5]:
        echo(f"[rlhfkit] skipped {s}")
    if len(loaded.skipped) > 5:
        echo(f"[rlhfkit] ... and {len(loaded.skipped) - 5} more skipped rows")
    if cfg.eval_data:
        held = load_records(cfg.eval_data, cfg.kind, skip_invalid=cfg.skip_invalid)
        counts["skipped_eval"] = len(held.skipped)
        for s in held.skipped[:5]:
            echo(f"[rlhfkit] skipped {s}")
        train, evaluation = loaded.records, held.records
    else:
        train, evaluation = split_by_prompt(loaded.records, cfg.eval_fraction, cfg.seed)
    if not train:
        raise ConfigError(f"{cfg.data}: {len(loaded.records)} rows leave nothing to train on after holding out "
                          f"--eval-fraction {cfg.eval_fraction}; lower it or pass --eval-data")
    return train, evaluation, counts


def run_reward_training(cfg, echo: Callable[[str], None] = print, progress: bool = True) -> dict[str, Any]:
    """`rlhfkit rm`: train a reward model on `cfg.data` (an `RMConfig`), evaluate it on held-out
    feedback, centre it on reference responses, and write the run folder. Returns the summary.
    `echo` receives the progress lines."""
    started = time.perf_counter()
    device = process_device(resolve_device(cfg.device))  # an unavailable device fails before anything is read
    parse_report_to(cfg.report_to)  # so does a tracker that is unknown or not installed
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    label = StepwiseLabels(cfg.step_separator) if cfg.kind == "stepwise" else LABEL_TYPES[cfg.kind]()
    train, evaluation, counts = _load_split(cfg, echo)
    if cfg.center_on:
        references, centred_on = load_reference_responses(cfg.center_on), str(cfg.center_on)
    elif label.centred:
        references, centred_on = label.reference_responses(train), "training responses"
    else:
        references, centred_on = None, None
    rm = with_members(load_reward_model(cfg.backbone, max_length=cfg.max_length, device=device),
                      cfg.ensemble, cfg.uncertainty_penalty)
    if cfg.kind == "stepwise":
        rm = ProcessRewardModel.on_backbone_of(rm, cfg.step_separator)
    name = cfg.run_name or time.strftime(f"rm-{cfg.kind}-%Y%m%d-%H%M%S")
    run = RunDir(cfg.output_dir, name, overwrite=cfg.overwrite, resume=cfg.resume)  # only once the inputs are good
    run.save_config(cfg)
    echo(f"[rlhfkit] run folder {run.path}  device {device}  {cfg.kind}: {len(train)} training rows, "
          f"{len(evaluation)} held-out")

    train_metrics = train_reward_model(rm, train, cfg, evaluation, logger=run.log_metrics, progress=progress,
                                       label_type=label, checkpointer=run.checkpointer(cfg.checkpoint_every),
                                       resume=cfg.resume)
    offset = rm.center(*references) if references is not None else 0.0
    final = evaluate_records(rm, evaluation, label) if evaluation else {}
    if final:
        run.log_metrics({"stage": "reward_model_final", **{f"eval/{k}": v for k, v in final.items()}})
    if run.writer:  # several processes: the first one writes (trainers/distributed.py)
        rm.save(run.path / "reward_model")

    summary = {
        "kind": cfg.kind,
        "data": cfg.data,
        "eval_data": cfg.eval_data or f"{cfg.eval_fraction:g} of --data, by prompt",
        "backbone": cfg.backbone,
        "records": {"train": len(train), "eval": len(evaluation), **counts},
        "label": label.describe(),
        "eval": {k: (None if isinstance(v, float) and v != v else v) for k, v in final.items()},
        "train": train_metrics if not evaluation else {},
        "centering": {"on": centred_on, "responses": len(references[0]) if references else 0, "offset": offset},
        "ensemble": {"members": rm.members, "uncertainty_penalty": getattr(rm, "uncertainty_penalty", 0.0)},
        "reward_model": str(run.path / "reward_model"),
        "seconds": round(time.perf_counter() - started, 2),
    }
    run.write_summary(summary)
    run.close()  # the trackers: their last rows are written
    if run.writer:
        write_report(run.path, echo)
    return summary
