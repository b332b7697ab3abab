"""Lexical and diversity metrics of a sample set, through the field's own libraries.

REFERENCES.md "Text metrics (GRUE, RL4LMs)": corpus BLEU by sacrebleu (tokenizer 13a, 0–100),
ROUGE-1/2/L F-measure with Porter stemming by rouge-score, METEOR by nltk (exact, stem and
WordNet-synonym matches, α 0.9, β 3, γ 0.5; WordNet read from installed files, see wordnet.py);
distinct-n over the whole set, self-BLEU (each sample's sentence BLEU against the rest of the
set, averaged: lower = more diverse), mean length in words, unigram entropy in bits. Model-based
numbers (perplexity, per-token entropy) are in perplexity.py.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from typing import Sequence

from rlhfkit.evaluation.metrics import distinct_n
from rlhfkit.evaluation.wordnet import load_wordnet

_WORD = re.compile(r"\w+|[^\w\s]")


def bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """sacrebleu's corpus BLEU (0–100). references[i]: the references of hypothesis i (any number ≥ 1)."""
    import sacrebleu

    depth = max(len(r) for r in references)
    streams = [[refs[k] if k < len(refs) else None for refs in references] for k in range(depth)]
    return float(sacrebleu.corpus_bleu(list(hypotheses), streams).score)


def rouge(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure (rouge-score, Porter stemmer); with several references, the best one counts."""
    from rouge_score import rouge_scorer

    kinds = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(kinds), use_stemmer=True)
    totals = dict.fromkeys(kinds, 0.0)
    for hyp, refs in zip(hypotheses, references):
        scores = scorer.score_multi(list(refs), hyp)
        for kind in kinds:
            totals[kind] += scores[kind].fmeasure
    n = max(len(hypotheses), 1)
    return {kind: totals[kind] / n for kind in kinds}


def words(text: str) -> list[str]:
    """Word and punctuation tokens (nltk's own tokenizer would need a downloaded model)."""
    return _WORD.findall(text)


def meteor(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean of nltk's sentence-level METEOR (lower-cased; several references: the best one)."""
    from nltk.translate.meteor_score import meteor_score

    wordnet = load_wordnet()
    scores = [meteor_score([words(r) for r in refs], words(hyp), wordnet=wordnet)
              for hyp, refs in zip(hypotheses, references)]
    return sum(scores) / max(len(scores), 1)


def self_bleu(texts: Sequence[str], max_samples: int = 200, seed: int = 0) -> float:
    """Mean sentence BLEU (0–100) of each text against all the others as references (Zhu et al.
    2018, Texygen). Above `max_samples` texts, a seeded subset of them is scored (each still
    against all the others): the cost grows with the square of the set size."""
    import sacrebleu

    texts = list(texts)
    if len(texts) < 2:
        return float("nan")
    chosen = list(range(len(texts)))
    if len(chosen) > max_samples:
        chosen = sorted(random.Random(seed).sample(chosen, max_samples))
    scores = [sacrebleu.sentence_bleu(texts[i], texts[:i] + texts[i + 1:]).score for i in chosen]
    return sum(scores) / len(scores)


def unigram_entropy(texts: Sequence[str]) -> float:
    """Shannon entropy (bits) of the word distribution over the whole set (RL4LMs' entropy-1)."""
    counts = Counter(w for t in texts for w in t.split())
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0


def diversity(texts: Sequence[str]) -> dict[str, float]:
    """distinct-1/2/3, self-BLEU, unigram entropy and mean length in words of a sample set."""
    return {
        "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2), "distinct_3": distinct_n(texts, 3),
        "self_bleu": self_bleu(texts), "unigram_entropy_bits": unigram_entropy(texts),
        "words_mean": sum(len(t.split()) for t in texts) / max(len(texts), 1),
    }


def lexical(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """BLEU, ROUGE-1/2/L and METEOR of hypotheses against their references."""
    if len(hypotheses) != len(references) or any(not refs for refs in references):
        raise ValueError("every hypothesis needs at least one reference")
    return {"bleu": bleu(hypotheses, references), **rouge(hypotheses, references),
            "meteor": meteor(hypotheses, references)}
