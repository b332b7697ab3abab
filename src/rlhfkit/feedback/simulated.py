"""A simulated human labeller: noisy Bradley–Terry choices from a gold scorer (the quickstart's
stand-in for people, as in Gao et al. 2023's synthetic set-up)."""

from __future__ import annotations

import math
import random

from rlhfkit.types import PairwiseRecord


def simulated_human_labels(prompts, responses_a, responses_b, gold_a, gold_b, temperature: float, rng: random.Random):
    """Bradley–Terry choices from gold scores: a is preferred with probability
    σ((gold_a − gold_b) / temperature), so near-ties are coin flips, like people's labels.
    Returns (pairs, number of identical-response pairs left out)."""
    pairs, identical = [], 0
    for prompt, a, b, ga, gb in zip(prompts, responses_a, responses_b, gold_a, gold_b):
        if a.strip() == b.strip():
            identical += 1
            continue
        p_a = 1.0 / (1.0 + math.exp(-(ga - gb) / temperature))
        a_wins = rng.random() < p_a
        chosen, rejected = (a, b) if a_wins else (b, a)
        pairs.append((PairwiseRecord(prompt=prompt, chosen=chosen, rejected=rejected), (ga, gb) if a_wins else (gb, ga)))
    return pairs, identical
