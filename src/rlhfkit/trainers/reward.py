"""Reward-model training from every kind of feedback (REFERENCES.md, "Reward models").

Each kind of label is a small typed class, as in lm-human-preferences' `label_types.py`: it owns
its record type (the schema), how records become one training batch (the texts to score in one
forward, plus target tensors), its loss, and which of its responses are reference outputs:

    PairwiseLabels  Bradley–Terry with label μ (1 hard, ½ tie, soft in between) and margin m
    RewriteLabels   the rewrite preferred over the original: one Bradley–Terry pair each
    RankingLabels   InstructGPT's K-wise loss: all C(K,2) pairs of a prompt, scaled by 1/C(K,2)
    RatingLabels    regression on standardised ratings
    ThumbsLabels    binary cross-entropy, the score being the logit of P(thumbs up)
    StepwiseLabels  process supervision: binary cross-entropy per step at each step's last token

The kind is chosen once (`LABEL_TYPES`); the loop is the same for all of them:

    for each batch of records: to_batch → score every text (one forward; M columns for an
    ensemble) → loss (averaged over members) → step → log → checkpoint;  evaluate held-out every epoch

Held-out "accuracy" is pairwise for every kind (`concordance`): the fraction of the comparisons
implied by the labels that the model orders correctly — pairs (ties skipped), all C(K,2) pairs
of each ranking, and for ratings/thumbs every two responses to the same prompt with different
labels (or, when no held-out prompt has two, any two responses with different labels).

`run_reward_training(RMConfig)` is `rlhfkit rm`: load → split → train → centre → evaluate → save.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import torch

from rlhfkit.algorithms import bradley_terry_loss
from rlhfkit.algorithms.process_reward import join_steps, stepwise_bce_loss
from rlhfkit.algorithms.reward_losses import (
    concordance,
    ensemble_mean_std,
    ranking_loss,
    rating_regression_loss,
    thumbs_bce_loss,
    uncertainty_penalized_score,
)
from rlhfkit.config import ConfigError
from rlhfkit.data.schemas import DataError
from rlhfkit.models.heads import RewardModel
from rlhfkit.models.process_reward import ProcessRewardModel
from rlhfkit.trainers.checkpoint import Checkpointer, EpochCursor, copy_into, tensors_of
from rlhfkit.trainers.common import check_finite
from rlhfkit.trainers.config import RewardTrainConfig
from rlhfkit.trainers.distributed import current
from rlhfkit.types import (
    PairwiseRecord,
    RankingRecord,
    RatingRecord,
    RewriteRecord,
    StepwiseRecord,
    ThumbsRecord,
)

# ---------------------------------------------------------------------------------------------
# Label types: schema → training batch → loss


@dataclass
class LabelBatch:
    """One batch of records as the texts to score and the targets of the kind's loss.

    prompts, responses: the N texts scored in one forward (N = 2B for pairs, Σ K_b for rankings,
    B for ratings/thumbs). targets: named (B, ...) tensors for the loss. order: (N,) float, higher
    = better, and groups: (N,) long, which texts may be compared (one pair, one ranking, or one
    prompt): together they define the held-out pairwise accuracy.
    """

    prompts: list[str]
    responses: list[str]
    targets: dict[str, torch.Tensor]
    order: torch.Tensor
    groups: torch.Tensor
    char_ends: list[list[int]] | None = None  # stepwise: each step's end in its response (N = the steps)


def _members_first(x: torch.Tensor) -> torch.Tensor:
    """(B, M, ...) per-member values -> (M·B, ...), member-major: one loss call over the result
    averages the M members' losses (each over the same B items)."""
    return x.transpose(0, 1).reshape(-1, *x.shape[2:])


def _prompt_groups(prompts: Sequence[str]) -> torch.Tensor:
    ids: dict[str, int] = {}
    return torch.tensor([ids.setdefault(p, len(ids)) for p in prompts], dtype=torch.long)


class LabelType:
    """A kind of feedback and its reward-model loss. Subclasses set `kind` (the `rlhfkit data`
    record kind), `record_type`, and implement `to_batch` and `loss`."""

    kind: ClassVar[str]
    record_type: ClassVar[type]
    centred: ClassVar[bool] = True
    """The trained model is centred on reference responses (not a PRM: its step logits are log-odds)."""
    compare_across_prompts: ClassVar[bool] = False
    """Pointwise labels are on one scale for every prompt: when no held-out prompt has two
    responses, accuracy falls back to pairs across prompts."""

    def fit(self, records: Sequence[Any]) -> None:
        """Learn what the kind needs from the training records (e.g. the rating scale)."""

    def to_batch(self, records: Sequence[Any]) -> LabelBatch:
        raise NotImplementedError

    def scores(self, rm: RewardModel, batch: LabelBatch) -> torch.Tensor:
        """(N, M) the batch's texts scored with gradients (one forward)."""
        return rm.member_scores_batch(batch.prompts, batch.responses)

    def eval_scores(self, rm: RewardModel, batch: LabelBatch, batch_size: int) -> torch.Tensor:
        """(N, M) the same without gradients, in batches, on CPU."""
        return rm.member_scores(batch.prompts, batch.responses, batch_size=batch_size)

    def loss(self, scores: torch.Tensor, batch: LabelBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """scores: (N, M) — each of the batch's N texts scored by M ensemble members (M = 1 for
        one model). -> (loss averaged over members, stats)."""
        raise NotImplementedError

    def reference_responses(self, records: Sequence[Any]) -> tuple[list[str], list[str]]:
        """(prompts, responses) that count as reference outputs for centring: every response."""
        batch = self.to_batch(records)
        return batch.prompts, batch.responses

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind}


class PairwiseLabels(LabelType):
    """Bradley–Terry on (chosen, rejected): L = −[μ log σ(Δ − m) + (1 − μ) log σ(−Δ − m)],
    Δ = r(chosen) − r(rejected), μ = `label` (1 hard, ½ tie, soft), m = `margin` (default 0)."""

    kind = "pairwise"
    record_type = PairwiseRecord

    def pairs(self, records: Sequence[Any]) -> list[PairwiseRecord]:
        return list(records)

    def to_batch(self, records: Sequence[Any]) -> LabelBatch:
        pairs = self.pairs(records)
        B = len(pairs)
        label = torch.tensor([p.label for p in pairs], dtype=torch.float32)  # (B,)
        targets = {"label": label}
        if any(p.margin is not None for p in pairs):
            targets["margin"] = torch.tensor([p.margin or 0.0 for p in pairs], dtype=torch.float32)
        # order: the preferred side 1, the other 0; a tie gives both ½ (not a comparison)
        order = torch.cat([label, 1.0 - label])  # (2B,)
        return LabelBatch(
            prompts=[p.prompt for p in pairs] * 2,
            responses=[p.chosen for p in pairs] + [p.rejected for p in pairs],
            targets=targets,
            order=order,
            groups=torch.arange(B).repeat(2),
        )

    def loss(self, scores, batch):
        B, M = batch.targets["label"].shape[0], scores.shape[1]
        chosen, rejected = scores[:B], scores[B:]  # (B, M) each
        label = batch.targets["label"].to(scores.device).repeat(M)  # (M·B,)
        margin = batch.targets.get("margin")
        margin = None if margin is None else margin.to(scores.device).repeat(M)
        return bradley_terry_loss(_members_first(chosen), _members_first(rejected), label, margin)


class RewriteLabels(PairwiseLabels):
    """A rewrite is a pair: the annotator's rewrite preferred over the original (μ = 1).
    The originals (the policy's own outputs) are the reference responses for centring."""

    kind = "rewrite"
    record_type = RewriteRecord

    def pairs(self, records: Sequence[Any]) -> list[PairwiseRecord]:
        return [PairwiseRecord(prompt=r.prompt, chosen=r.rewrite, rejected=r.original) for r in records]

    def reference_responses(self, records):
        return [r.prompt for r in records], [r.original for r in records]


class RankingLabels(LabelType):
    """InstructGPT's K-wise loss: each ranking of K responses (best first) is one batch element
    whose C(K,2) Bradley–Terry pairs are averaged (`ranking_loss`); one forward per response."""

    kind = "ranking"
    record_type = RankingRecord

    def to_batch(self, records: Sequence[Any]) -> LabelBatch:
        K = max(len(r.responses) for r in records)
        index = torch.zeros(len(records), K, dtype=torch.long)  # (B, K) into the flat texts
        mask = torch.zeros(len(records), K, dtype=torch.bool)  # (B, K)
        prompts, responses, order, groups = [], [], [], []
        for b, r in enumerate(records):
            k = len(r.responses)
            index[b, :k] = torch.arange(len(responses), len(responses) + k)
            mask[b, :k] = True
            prompts += [r.prompt] * k
            responses += list(r.responses)
            order += [float(k - i) for i in range(k)]  # best first -> highest
            groups += [b] * k
        return LabelBatch(prompts, responses, {"index": index, "mask": mask},
                          torch.tensor(order), torch.tensor(groups, dtype=torch.long))

    def loss(self, scores, batch):
        index, mask = batch.targets["index"].to(scores.device), batch.targets["mask"].to(scores.device)
        M = scores.shape[1]
        ranked = scores[index]  # (B, K, M)
        return ranking_loss(_members_first(ranked.permute(0, 2, 1)), mask.repeat(M, 1))  # (M·B, K)


class RatingLabels(LabelType):
    """Regression on ratings standardised with the training ratings' mean and std, so a 1–5 and
    a 1–10 scale train the same model: target t = (rating − mean) / std, loss (r − t)².
    Pass `mean` and `std` to fix the scale yourself; `fit` fills in what is not given."""

    kind = "rating"
    record_type = RatingRecord
    compare_across_prompts = True

    def __init__(self, mean: float | None = None, std: float | None = None):
        self.mean, self.std = mean, std

    def fit(self, records):
        ratings = torch.tensor([r.rating for r in records], dtype=torch.float64)
        if self.mean is None:
            self.mean = float(ratings.mean())
        if self.std is None:
            std = float(ratings.std(unbiased=False)) if len(ratings) > 1 else 0.0
            if std == 0.0:
                raise DataError(f"all {len(ratings)} training ratings equal {float(ratings[0])}; "
                                "a rating reward model needs ratings that differ")
            self.std = std

    def to_batch(self, records):
        if self.mean is None or self.std is None:
            raise RuntimeError("RatingLabels needs the rating scale: call fit(training_records) first")
        rating = torch.tensor([r.rating for r in records], dtype=torch.float32)
        prompts = [r.prompt for r in records]
        return LabelBatch(prompts, [r.response for r in records], {"target": (rating - self.mean) / self.std},
                          rating, _prompt_groups(prompts))

    def loss(self, scores, batch):
        M = scores.shape[1]
        return rating_regression_loss(_members_first(scores), batch.targets["target"].to(scores.device).repeat(M))

    def reference_responses(self, records):
        return [r.prompt for r in records], [r.response for r in records]

    def describe(self):
        return {"kind": self.kind, "rating_mean": self.mean, "rating_std": self.std,
                "note": "targets are (rating − rating_mean) / rating_std"}


class ThumbsLabels(LabelType):
    """Binary cross-entropy on thumbs up/down; before centring, σ(score) estimates P(up)."""

    kind = "thumbs"
    record_type = ThumbsRecord
    compare_across_prompts = True

    def fit(self, records):
        ups = sum(r.thumbs_up for r in records)
        if ups in (0, len(records)):
            side = "up" if ups else "down"
            raise DataError(f"all {len(records)} training thumbs are {side}; a thumbs reward model needs both")

    def to_batch(self, records):
        up = torch.tensor([float(r.thumbs_up) for r in records])
        prompts = [r.prompt for r in records]
        return LabelBatch(prompts, [r.response for r in records], {"thumbs_up": up}, up, _prompt_groups(prompts))

    def loss(self, scores, batch):
        M = scores.shape[1]
        loss, stats = thumbs_bce_loss(_members_first(scores), batch.targets["thumbs_up"].to(scores.device).repeat(M))
        return loss, {"thumbs_accuracy": stats["accuracy"]}


class StepwiseLabels(LabelType):
    """Process supervision (Lightman et al. 2023; TRL's stepwise format): the completion is its
    steps joined by `separator`, a `ProcessRewardModel` gives a logit at each step's last token,
    and the loss is the binary cross-entropy per step (`stepwise_bce_loss`). The batch's N texts
    are its S steps; held-out accuracy compares the correct and incorrect steps of a completion.
    Steps truncated away by max_length are left out and counted (`steps_truncated`)."""

    kind = "stepwise"
    record_type = StepwiseRecord
    centred = False

    def __init__(self, separator: str = "\n"):
        self.separator = separator

    def to_batch(self, records):
        prompts, responses, ends, labels, groups = [], [], [], [], []
        for b, r in enumerate(records):
            text, step_ends = join_steps(r.completions, self.separator)
            prompts.append(r.prompt)
            responses.append(text)
            ends.append(step_ends)
            labels += [float(y) for y in r.labels]
            groups += [b] * len(r.labels)
        label = torch.tensor(labels)  # (S,)
        return LabelBatch(prompts, responses, {"labels": label}, label, torch.tensor(groups, dtype=torch.long), ends)

    @staticmethod
    def _prm(rm: RewardModel) -> ProcessRewardModel:
        if not isinstance(rm, ProcessRewardModel):
            raise ConfigError("stepwise labels train a process reward model (ProcessRewardModel.on_backbone_of(rm, separator))")
        return rm

    def scores(self, rm, batch):
        return self._prm(rm).step_logits_batch(batch.prompts, batch.responses, batch.char_ends)[:, None]  # (S, 1)

    @torch.no_grad()
    def eval_scores(self, rm, batch, batch_size):
        prm, was_training = self._prm(rm), rm.training
        rm.eval()
        out = [prm.step_logits_batch(batch.prompts[i: i + batch_size], batch.responses[i: i + batch_size],
                                     batch.char_ends[i: i + batch_size]).float().cpu()
               for i in range(0, len(batch.prompts), batch_size)]
        rm.train(was_training)
        return torch.cat(out)[:, None]

    def loss(self, scores, batch):
        logits, labels = scores[:, 0], batch.targets["labels"].to(scores.device)
        kept = torch.isfinite(logits)
        loss, stats = stepwise_bce_loss(logits[kept], labels[kept])
        return loss, {**stats, "steps_truncated": (~kept).sum().float()}

    def describe(self):
        return {"kind": self.kind, "step_separator": self.separator, "score": "logit of P(step correct) at each step's last token"}


LABEL_TYPES: dict[str, type[LabelType]] = {
    "pairwise": PairwiseLabels,
    "ranking": RankingLabels,
    "rating": RatingLabels,
    "thumbs": ThumbsLabels,
    "rewrite": RewriteLabels,
    "stepwise": StepwiseLabels,
}
"""Label type of each feedback kind (`rlhfkit rm --kind`)."""

_BY_RECORD = {cls.record_type: cls for cls in LABEL_TYPES.values()}


def label_type_for(records: Sequence[Any], label_type: LabelType | str | None = None) -> LabelType:
    """The label type to train `records` with: given (an instance or a kind name), or inferred
    from the record type. All records must be of that type."""
    if not records:
        raise ConfigError("no feedback records: a reward model needs at least one labelled example")
    if label_type is None:
        first = type(records[0])
        if first not in _BY_RECORD:
            raise ConfigError(f"cannot train a reward model on {first.__name__} records; "
                              f"use one of {', '.join(c.__name__ for c in _BY_RECORD)}")
        label_type = _BY_RECORD[first]()
    elif isinstance(label_type, str):
        if label_type not in LABEL_TYPES:
            raise ConfigError(f"unknown feedback kind {label_type!r}; one of {', '.join(LABEL_TYPES)}")
        label_type = LABEL_TYPES[label_type]()
    wrong = next((r for r in records if not isinstance(r, label_type.record_type)), None)
    if wrong is not None:
        raise ConfigError(f"{label_type.kind} training needs {label_type.record_type.__name__} records, "
                          f"got a {type(wrong).__name__}; train one kind of feedback at a time")
    return label_type


# ---------------------------------------------------------------------------------------------
# Evaluation


def pairwise_forward(rm: RewardModel, pairs: Sequence[PairwiseRecord]) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of chosen and rejected in one forward over the 2·B texts. -> ((B,), (B,))."""
    prompts = [p.prompt for p in pairs] * 2
    responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    scores = rm.score_batch(prompts, responses)  # (2B,)
    return scores[: len(pairs)], scores[len(pairs):]


@torch.no_grad()
def evaluate_records(rm: RewardModel, records: Sequence[Any], label_type: LabelType | str | None = None,
                     batch_size: int = 64) -> dict[str, Any]:
    """Held-out metrics of any kind of feedback.

    loss: the kind's own loss (member average). accuracy: pairwise accuracy of the model's score
    (`rm.score`: mean − λ·std for an ensemble) over the comparisons the labels imply, `pairs` of
    them, `accuracy_scope` "same_prompt" or "all_pairs" (see the module docstring); NaN without
    comparisons. Plus the loss's own statistics (e.g. thumbs_accuracy, mae). For an ensemble:
    member_accuracy_mean, and ensemble_std_mean — the mean over texts of the std across members
    after centring each member on these texts (a head's constant is arbitrary under a pairwise
    loss, so only differences in shape count as disagreement).
    """
    label = label_type_for(records, label_type)
    batch = label.to_batch(records)
    members = label.eval_scores(rm, batch, batch_size)  # (N, M)
    loss, stats = label.loss(members, batch)
    scored = torch.isfinite(members).all(1)  # a PRM's steps truncated away are not compared
    if not bool(scored.all()):
        members, batch = members[scored], dataclasses.replace(batch, order=batch.order[scored], groups=batch.groups[scored])
    score = uncertainty_penalized_score(members, getattr(rm, "uncertainty_penalty", 0.0))  # (N,)
    accuracy, pairs = concordance(score, batch.order, batch.groups)
    scope = "same_prompt"
    if pairs == 0 and label.compare_across_prompts:
        accuracy, pairs, scope = *concordance(score, batch.order), "all_pairs"
    result: dict[str, Any] = {k: float(v) for k, v in stats.items() if k not in ("accuracy", "pairs")}
    result.update(loss=float(loss), accuracy=float(accuracy), pairs=int(pairs), accuracy_scope=scope)
    if members.shape[1] > 1:
        _, std = ensemble_mean_std(members - members.mean(0))
        per_member = [float(concordance(members[:, m], batch.order, batch.groups if scope == "same_prompt" else None)[0])
                      for m in range(members.shape[1])]
        result.update(ensemble_std_mean=float(std.mean()), member_accuracy_mean=sum(per_member) / len(per_member))
    return result


def evaluate_pairs(rm: RewardModel, pairs: Sequence[PairwiseRecord], batch_size: int = 64) -> dict[str, float]:
    """Held-out Bradley–Terry loss and accuracy of pairs (ties excluded from accuracy)."""
    return evaluate_records(rm, pairs, PairwiseLabels(), batch_size=batch_size)


# ---------------------------------------------------------------------------------------------
# Training


def _reward_optimizer(rm: RewardModel, config: RewardTrainConfig) -> torch.optim.Optimizer:
    """AdamW with the head on its own (larger) learning rate."""
    head_params = list(rm.head.parameters())
    head_ids = {id(p) for p in head_params}
    body_params = [p for p in rm.parameters() if p.requires_grad and id(p) not in head_ids]
    return torch.optim.AdamW(
        [{"params": body_params, "lr": config.learning_rate}, {"params": head_params, "lr": config.head_learning_rate}],
        weight_decay=config.weight_decay,
    )


def _local_loss(rm: RewardModel, label: LabelType, records: list[Any], global_size: int,
                step: int) -> dict[str, float]:
    """Backpropagate these records' share of the loss of a batch of `global_size` records (every
    kind's loss is a mean over records); returns their stats weighted by the same share (counts
    such as `pairs` are summed instead)."""
    if not records:  # a process whose shard of a small last batch is empty
        return {}
    batch = label.to_batch(records)  # schema → texts + targets
    scores = label.scores(rm, batch)  # (N, M)
    loss, stats = label.loss(scores, batch)
    check_finite("reward-model loss", loss.detach(), step)
    share = len(records) / global_size
    (loss * share if share != 1 else loss).backward()
    return {k: float(v) * (1 if k == "pairs" else share) for k, v in {"loss": loss.detach(), **stats}.items()}


def _train_step(rm: RewardModel, label: LabelType, records: list[Any], optimizer, config: RewardTrainConfig,
                step: int, epoch: int, logger: Callable[[dict], None] | None) -> dict[str, Any]:
    """One batch of records: score → the kind's loss → step → log. Returns the row logged. With
    several processes each scores its shard and the gradients are summed (trainers/distributed.py)."""
    rm.train()
    dist = current()
    optimizer.zero_grad(set_to_none=True)
    stats = dist.sum_dict(_local_loss(rm, label, list(dist.shard(records)), len(records), step))
    trainable = [p for p in rm.parameters() if p.requires_grad]
    dist.reduce_gradients(trainable)
    grad_norm = torch.nn.utils.clip_grad_norm_(rm.parameters(), config.max_grad_norm)
    check_finite("reward-model gradient norm", grad_norm.detach(), step)
    optimizer.step()
    row = {"stage": "reward_model", "step": step, "epoch": epoch, **stats, "grad_norm": float(grad_norm)}
    if logger:
        logger(row)
    return row


def _epoch_result(rm: RewardModel, label: LabelType, eval_pairs: Sequence[Any], epoch_rows: list[dict], epoch: int,
                  logger: Callable[[dict], None] | None) -> dict[str, Any]:
    """Held-out metrics after an epoch (logged), or without held-out records the epoch's mean training stats."""
    if eval_pairs:
        result = evaluate_records(rm, eval_pairs, label)
        if logger:
            logger({"stage": "reward_model_eval", "epoch": epoch, **{f"eval/{k}": v for k, v in result.items()}})
        return result
    keys = [k for k in epoch_rows[0] if k not in ("stage", "step", "epoch")]
    return {k: sum(r[k] for r in epoch_rows) / len(epoch_rows) for k in keys}


def train_reward_model(
    rm: RewardModel,
    train_pairs: Sequence[Any],
    config: RewardTrainConfig,
    eval_pairs: Sequence[Any] = (),
    logger: Callable[[dict], None] | None = None,
    progress: bool = True,
    *,
    label_type: LabelType | str | None = None,
    checkpointer: Checkpointer | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train `rm` (a `RewardModel` or `RewardEnsemble`) in place on records of one kind.

    train_pairs / eval_pairs: records of one type (PairwiseRecord, RankingRecord, RatingRecord,
    ThumbsRecord or RewriteRecord; the names are kept from when only pairs were supported).
    label_type: a `LabelType` (or kind name) to use; default: inferred from the record type. It
    is fitted on the training records (e.g. the rating scale). Returns the final held-out
    metrics of `evaluate_records`, or, without eval records, the last epoch's mean training
    loss and statistics. Does not centre the model (see `RewardModel.center`). checkpointer:
    where to checkpoint (every checkpointer.every steps and at the end); resume: continue from
    its latest checkpoint.
    """
    from tqdm.auto import tqdm

    label = label_type_for(train_pairs, label_type)
    label.fit(train_pairs)
    if eval_pairs:
        label_type_for(eval_pairs, label)  # same kind, or a clear error before training
    torch.manual_seed(config.seed)
    optimizer = _reward_optimizer(rm, config)
    trainable = [p for p in rm.parameters() if p.requires_grad]
    current().broadcast_parameters(trainable)  # the same initial head on every process
    cursor = EpochCursor(len(train_pairs), config.batch_size, config.seed)
    total = config.epochs * math.ceil(len(train_pairs) / config.batch_size)
    step, result, epoch_rows = 0, {}, []
    state = checkpointer.load() if resume and checkpointer is not None else None
    if state is not None:
        copy_into(trainable, state["trainable"])
        optimizer.load_state_dict(state["optimizer"])
        cursor.load(state["cursor"])
        step, result, epoch_rows = state["step"], state["result"], state["epoch_rows"]
    bar = tqdm(total=total, initial=step, desc=f"reward model ({label.kind})", disable=not progress,
               unit="step", dynamic_ncols=True)

    def checkpoint() -> None:
        checkpointer.save(step, {"trainable": tensors_of(trainable), "optimizer": optimizer.state_dict(),
                                 "cursor": cursor.state(), "result": result, "epoch_rows": epoch_rows})

    while step < total:
        epoch, indices, epoch_done = cursor.next_batch()
        epoch_rows.append(_train_step(rm, label, [train_pairs[i] for i in indices], optimizer, config, step, epoch, logger))
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{epoch_rows[-1]['loss']:.3f}")
        if epoch_done:
            result, epoch_rows = _epoch_result(rm, label, eval_pairs, epoch_rows, epoch, logger), []
        if checkpointer is not None and (step == total or checkpointer.due(step)) and (state is None or step > state["step"]):
            checkpoint()
    bar.close()
    rm.eval()
    return result
