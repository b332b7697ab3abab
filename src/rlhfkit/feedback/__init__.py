"""Feedback collection: an AI labeler (RLAIF) and a human feedback web app.

Both write the record kinds of `rlhfkit.data.schemas` that `rlhfkit rm` and `rlhfkit dpo` read.

- labels.py     feedback kinds as typed classes (PairwiseLabel, RankingLabel, RatingLabel, ...)
                that become training rows; checking of submitted answers; aggregation
- judge.py      judge prompts and the RLAIF math (soft labels, debiasing, position statistics)
- backends.py   judges: local causal LM, OpenAI-compatible HTTP endpoint, on-disk cache
- labeler.py    techniques (base, +swap, +CoT, +self-consistency), alignment table, direct-RLAIF reward
- store.py      SQLite store of items, annotators, labels; server.py the FastAPI app; static/ the page
- agreement.py  Krippendorff's α and Fleiss' κ

May import types, data, models and generation; never trainers, evaluation or cli. torch,
FastAPI, uvicorn and httpx are imported only by the modules that need them, never by cli.py at
module level.
"""
