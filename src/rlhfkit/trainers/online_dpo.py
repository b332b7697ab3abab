"""Online DPO in the online loop (Guo et al. 2024; TRL's OnlineDPOTrainer): every iteration samples
two responses per prompt from the current policy, the reward — a judge, a reward model or any
reward function — picks the winner of each pair, and DPO steps follow on those fresh pairs.

The loop is OnlineTrainer's (generate → score → passes → log → checkpoint, resume and all); only
the update differs: `_update` forms the pairs (algorithms.online_pairs) and takes DPO steps on
summed response log-probs against the anchor pass (the frozen reference, or the adapter-disabled
base with LoRA), with β the loop's KL coefficient (fixed, or steered by --target-kl). With
ppo_epochs 1 each pair is trained on once, on-policy.

Iterative DPO (--dpo-rounds; Xu et al. 2023, Yuan et al. 2024) is this loop with one iteration
per round: the round's pairs are sampled at once, --ppo-epochs DPO passes go over them, and the
reference is the 'previous' anchor refreshed after every iteration (the policy as the round
starts) or the initial policy (RLConfig._derive_rounds); `_round_stats` logs the round.

`make_online_trainer` builds the trainer the config's algorithm needs (the pipelines call it).
"""

from __future__ import annotations

import torch

from rlhfkit.algorithms.online_pairs import preference_pairs
from rlhfkit.algorithms import kl_k1
from rlhfkit.algorithms.preference import dpo_loss
from rlhfkit.models.forward import response_forward
from rlhfkit.trainers.common import check_finite
from rlhfkit.trainers.online import OnlineTrainer, PassPlan
from rlhfkit.types import ScoredRollout


class OnlineDPOTrainer(OnlineTrainer):
    """OnlineTrainer whose update is DPO on the pairs each iteration samples (group_size 2)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # the general path always: the no-grad pass gives the logged entropy and KL, and DPO
        # always needs the anchor's (reference's) log-probs
        self.plan = PassPlan(single_update_rows=0, anchor=True)

    def _pair_batches(self, n_pairs: int):
        """Pair indices of each optimiser step: ppo_epochs passes over a fresh permutation, cut
        into mini-batches of mini_batch_size / 2 pairs."""
        per_step = max(1, self.cfg.mini_batch_size // 2)
        for _ in range(self.cfg.ppo_epochs):
            order = torch.randperm(n_pairs, generator=self.generator, device=self.device)
            for start in range(0, n_pairs, per_step):
                yield order[start: start + per_step]

    def _update(self, scored: ScoredRollout, advantages: torch.Tensor, returns: torch.Tensor | None) -> dict[str, float]:
        """DPO steps on this iteration's pairs; micro-batches of micro_batch_size / 2 pairs
        accumulate to each mini-batch's mean loss. Returns the mean stats of the steps."""
        chosen, rejected, label = preference_pairs(scored.scores)
        ref_seq = (scored.anchor_logprobs * scored.mask).sum(1)  # (B,) log π_ref(y|x), nats
        per_micro = max(1, self.cfg.micro_batch_size // 2)
        sums: dict[str, float] = {}
        steps = 0
        self.policy.eval()  # dropout off, as in the other updates
        for mini in self._pair_batches(chosen.shape[0]):
            self.optimizer.zero_grad(set_to_none=True)
            for m0 in range(0, len(mini), per_micro):
                pairs = mini[m0: m0 + per_micro]
                rows = torch.cat([chosen[pairs], rejected[pairs]])
                out, r_mask = self._grad_forward(scored.rollout, rows)
                seq = (out.logprobs * r_mask).sum(1)  # (2b,)
                b = len(pairs)
                loss, stats = dpo_loss(seq[:b], seq[b:], ref_seq[chosen[pairs]], ref_seq[rejected[pairs]],
                                       beta=scored.kl_coef, label=label[pairs])
                check_finite("online DPO loss", loss.detach(), self.step_count)
                (loss * b / len(mini)).backward()
                for name, value in {"loss/dpo": loss.detach(), **stats}.items():
                    sums[name] = sums.get(name, 0.0) + float(value) * b / len(mini)
            grad_norm, ptx_loss = self._optimizer_step()
            sums["policy/grad_norm"] = sums.get("policy/grad_norm", 0.0) + grad_norm
            if ptx_loss is not None:
                sums["loss/ptx"] = sums.get("loss/ptx", 0.0) + ptx_loss
            steps += 1
        self.optimizer.zero_grad(set_to_none=True)
        stats = {k: v / max(steps, 1) for k, v in sums.items()}
        stats["online_dpo/tie_fraction"] = float((label == 0.5).float().mean())
        if self.cfg.dpo_rounds:
            stats.update(self._round_stats(scored, chosen, rejected, label, ref_seq))
        return stats

    @torch.no_grad()
    def _sequence_logprobs(self, ro, model) -> torch.Tensor:
        """(B,) log model(y|x) of the rollout's responses, summed over their tokens (nats)."""
        with self._autocast():
            out = response_forward(model, ro.prompt_ids, ro.prompt_mask, ro.response_ids, ro.response_mask)
        return (out.logprobs * ro.response_mask).sum(1)

    def _round_stats(self, scored: ScoredRollout, chosen, rejected, label, ref_seq) -> dict[str, float]:
        """Iterative DPO's round log, after the round's DPO phase: the chosen responses' win rate
        (the share of the judge's decisive pairs whose chosen response the updated policy ranks
        above the rejected one by the implicit reward log π/π_ref; a tie counts ½) and the KL of
        the round's sampling policy to the initial one (k1 per sequence, nats)."""
        ro = scored.rollout
        policy_seq = self._sequence_logprobs(ro, self.policy)
        h = (policy_seq[chosen] - ref_seq[chosen]) - (policy_seq[rejected] - ref_seq[rejected])  # (n,)
        wins = (h > 0).float() + 0.5 * (h == 0).float()
        decisive = label == 1.0
        stats = {"iterative_dpo/round": float(self.step_count + 1)}
        if bool(decisive.any()):
            stats["iterative_dpo/chosen_win_rate"] = float(wins[decisive].mean())
        # the reference is the initial policy: with no snapshot anchor, the anchor's pass is its pass
        initial = scored.anchor_logprobs if self.anchor is None else self._frozen_logprobs(ro, self.reference)
        stats["iterative_dpo/kl_k1_to_initial"] = float((kl_k1(scored.unmasked_logprobs, initial) * scored.mask).sum(1).mean())
        return stats


TRAINERS = {"online_dpo": OnlineDPOTrainer}


def make_online_trainer(policy, tokenizer, reward_fn, config, **kwargs) -> OnlineTrainer:
    """The online trainer of config.algo: OnlineDPOTrainer for online_dpo, else OnlineTrainer."""
    return TRAINERS.get(config.algo, OnlineTrainer)(policy, tokenizer, reward_fn, config, **kwargs)
