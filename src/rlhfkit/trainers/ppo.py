"""Deprecated location: the online trainer lives in `rlhfkit.trainers.online`."""

from rlhfkit.trainers.common import NonFiniteError, check_finite as _check_finite  # noqa: F401
from rlhfkit.trainers.online import OnlineTrainer as PPOTrainer  # noqa: F401
