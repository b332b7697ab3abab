"""Pairwise Bradley–Terry reward-model training (Christiano et al. 2017; Stiennon et al. 2020).

    for each batch of pairs: score both sides → BT loss with label μ and margin → step → log
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

import torch

from rlhfkit.algorithms import bradley_terry_loss
from rlhfkit.models.heads import RewardModel
from rlhfkit.trainers.config import RewardTrainConfig
from rlhfkit.trainers.ppo import _check_finite
from rlhfkit.types import PairwiseRecord


def _batch_tensors(pairs: Sequence[PairwiseRecord], device) -> tuple[torch.Tensor, torch.Tensor | None]:
    labels = torch.tensor([p.label for p in pairs], dtype=torch.float32, device=device)
    has_margin = any(p.margin is not None for p in pairs)
    margins = torch.tensor([p.margin or 0.0 for p in pairs], dtype=torch.float32, device=device) if has_margin else None
    return labels, margins


def pairwise_forward(rm: RewardModel, pairs: Sequence[PairwiseRecord]) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of chosen and rejected in one forward over the 2·B texts. -> ((B,), (B,))."""
    prompts = [p.prompt for p in pairs] * 2
    responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    scores = rm.score_batch(prompts, responses)  # (2B,)
    return scores[: len(pairs)], scores[len(pairs):]


@torch.no_grad()
def evaluate_pairs(rm: RewardModel, pairs: Sequence[PairwiseRecord], batch_size: int = 64) -> dict[str, float]:
    """Held-out BT loss and accuracy (ties excluded from accuracy)."""
    rm.eval()
    losses, correct, decided = [], 0.0, 0.0
    for i in range(0, len(pairs), batch_size):
        batch = pairs[i : i + batch_size]
        chosen, rejected = pairwise_forward(rm, batch)
        labels, margins = _batch_tensors(batch, rm.device)
        loss, stats = bradley_terry_loss(chosen, rejected, labels, margins)
        n_decided = float((labels != 0.5).sum())
        losses.append(float(loss) * len(batch))
        correct += float(stats["accuracy"]) * n_decided
        decided += n_decided
    return {"loss": sum(losses) / max(len(pairs), 1), "accuracy": correct / max(decided, 1.0)}


def train_reward_model(
    rm: RewardModel,
    train_pairs: Sequence[PairwiseRecord],
    config: RewardTrainConfig,
    eval_pairs: Sequence[PairwiseRecord] = (),
    logger: Callable[[dict], None] | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Train `rm` in place. Returns the final held-out metrics (or training metrics without eval pairs)."""
    from tqdm.auto import tqdm

    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    head_params = list(rm.head.parameters())
    head_ids = {id(p) for p in head_params}
    body_params = [p for p in rm.parameters() if p.requires_grad and id(p) not in head_ids]
    optimizer = torch.optim.AdamW(
        [{"params": body_params, "lr": config.learning_rate}, {"params": head_params, "lr": config.head_learning_rate}],
        weight_decay=config.weight_decay,
    )
    order = list(range(len(train_pairs)))
    steps_per_epoch = (len(order) + config.batch_size - 1) // config.batch_size
    bar = tqdm(total=config.epochs * steps_per_epoch, desc="reward model", disable=not progress, unit="step", dynamic_ncols=True)
    step = 0
    result: dict[str, float] = {}
    for epoch in range(config.epochs):
        rng.shuffle(order)
        rm.train()
        for start in range(0, len(order), config.batch_size):
            batch = [train_pairs[i] for i in order[start : start + config.batch_size]]
            chosen, rejected = pairwise_forward(rm, batch)
            labels, margins = _batch_tensors(batch, rm.device)
            loss, stats = bradley_terry_loss(chosen, rejected, labels, margins)
            _check_finite("reward-model loss", loss.detach(), step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(rm.parameters(), config.max_grad_norm)
            _check_finite("reward-model gradient norm", grad_norm.detach(), step)
            optimizer.step()
            row = {"stage": "reward_model", "step": step, "epoch": epoch, "loss": float(loss.detach()), "accuracy": float(stats["accuracy"])}
            if logger:
                logger(row)
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", acc=f"{float(stats['accuracy']):.2f}")
            step += 1
        if eval_pairs:
            result = evaluate_pairs(rm, eval_pairs)
            if logger:
                logger({"stage": "reward_model_eval", "epoch": epoch, **{f"eval/{k}": v for k, v in result.items()}})
    bar.close()
    rm.eval()
    return result
