"""Feedback collection: an AI labeler (RLAIF) and a human feedback web app.

Both write the record kinds of `rlhfkit.data.schemas` that `rlhfkit rm` and `rlhfkit dpo` read.
"""
