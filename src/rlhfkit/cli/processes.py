"""Several processes of one run (`accelerate launch`, `torchrun`): only the first one talks.

The launcher sets RANK and WORLD_SIZE in each process's environment. Every process but the
first sends its standard output nowhere and drops the progress bars from its standard error
(a bar redraws itself with a carriage return), so a person sees one set of lines and one bar,
and still sees every process's warnings and errors. Nothing here imports torch."""

from __future__ import annotations

import os
import sys


class _WithoutBars:
    """A text stream that passes everything but progress-bar redraws (writes holding "\\r")."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        if "\r" not in text:
            self._stream.write(text)
        return len(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def is_other_process() -> bool:
    """True in a launched process that is not the first (RANK > 0 of WORLD_SIZE > 1)."""
    return os.environ.get("RANK", "0") not in ("", "0") and os.environ.get("WORLD_SIZE", "1") not in ("", "1")


def quiet_other_processes() -> None:
    if is_other_process():
        sys.stdout = open(os.devnull, "w")
        sys.stderr = _WithoutBars(sys.stderr)
