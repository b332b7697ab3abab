"""Who labels a round of `rlhfkit iterate`: the simulated human (quickstart's), an AI judge (both
orders averaged), or people in the feedback app (the round waits for their labels).

Each labeler takes the round's prompts and their two responses (adjacent) and returns quickstart's
labelled pairs: [(PairwiseRecord, (gold of chosen, gold of rejected))], written to the round's
file and split into train / held-out by `quickstart.split_labelled`. The task's gold is computed
for every pair whoever labels it: it measures the reward model's gold-order accuracy.
"""

from __future__ import annotations

import sys
import time

from rlhfkit.feedback.backends import load_judge
from rlhfkit.feedback.judge import JudgeTemplate
from rlhfkit.feedback.labeler import LabelPlan, Pair, label_pairs
from rlhfkit.feedback.labels import label_from_value
from rlhfkit.feedback.store import FeedbackStore, NewItem
from rlhfkit.pipelines.quickstart import _label_pairs, split_labelled
from rlhfkit.types import PairwiseRecord


def label_round(q, r: int, prompts: list[str], responses: list[str]) -> dict:
    """The labelled, split pairs of round `r` from cfg.labeler."""
    filename = f"labels_round{r}.jsonl"
    if q.cfg.labeler == "simulated":
        return _label_pairs(q, prompts, responses, seed=q.cfg.seed + 1000 * r, filename=filename)
    distinct = [(p, a, b) for p, a, b in zip(prompts, responses[0::2], responses[1::2]) if a.strip() != b.strip()]
    identical = len(prompts) - len(distinct)
    if q.cfg.labeler == "ai":
        records = _ai_labels(q, distinct)
    else:
        records = _feedback_labels(q, r, distinct)
    gold_chosen = q.task.gold([x.prompt for x in records], [x.chosen for x in records])
    gold_rejected = q.task.gold([x.prompt for x in records], [x.rejected for x in records])
    return split_labelled(q, list(zip(records, zip(gold_chosen, gold_rejected))), identical, filename)


def _ai_labels(q, pairs: list[tuple[str, str, str]]) -> list[PairwiseRecord]:
    """The judge's soft label P(first ≻ second), judged in both orders and averaged (position
    debiasing, as `rlhfkit label --debias swap`); the first response is `chosen`, `label` its
    probability."""
    cfg = q.cfg
    judge = load_judge(cfg.judge, device=cfg.device, precision=cfg.precision, seed=cfg.seed)
    run = label_pairs(judge, [Pair(p, a, b) for p, a, b in pairs], JudgeTemplate(), LabelPlan(swap=True),
                      progress=lambda stage: print(f"[rlhfkit] AI labels: {stage}", flush=True))
    return [PairwiseRecord(prompt=p, chosen=a, rejected=b, label=min(max(float(x), 0.0), 1.0))
            for (p, a, b), x in zip(pairs, run.final.p_first)]


def _feedback_labels(q, r: int, pairs: list[tuple[str, str, str]]) -> list[PairwiseRecord]:
    """Import the pairs as pairwise items (tagged with the run and round; importing again adds
    nothing, so a restarted round waits on the same items), then wait until people have given
    cfg.labels_per_round labels to them, with a progress line. One record per label ("both bad"
    answers are left out); a tie is label 0.5."""
    cfg = q.cfg
    store = FeedbackStore(cfg.feedback_db)
    tag = {"iterate_run": str(q.run.path), "round": r}
    store.add_items([NewItem("pairwise", p, (a, b), meta=tag) for p, a, b in pairs])
    wanted = cfg.labels_per_round or len(pairs)
    print(f"[rlhfkit] round {r}: {len(pairs)} pairs in {cfg.feedback_db}; waiting for {wanted} labels "
          "(label them in `rlhfkit feedback serve`)", flush=True)
    while True:
        entries = [e for e in store.labels("pairwise") if all(e["item"].meta.get(k) == v for k, v in tag.items())]
        print(f"\r[rlhfkit] round {r}: {len(entries)}/{wanted} labels", end="", file=sys.stderr, flush=True)
        if len(entries) >= wanted:
            break
        time.sleep(cfg.poll_seconds)
    print(file=sys.stderr)
    store.close()
    records = []
    for e in entries:
        item = e["item"]
        record = label_from_value("pairwise", item.prompt, item.responses, e["value"]).to_record()
        if record is not None:
            records.append(record)
    return records
