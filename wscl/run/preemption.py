"""Stop requests from a cluster scheduler [ours].

SLURM sends SIGTERM when it preempts a job or at its time limit, and, when asked (``sbatch
--signal=USR1@300``), SIGUSR1 some minutes earlier. The handler only records the request: the trainer
writes a checkpoint at its next safe point and stops with ``ExitCode.REQUEUE``. Handlers are installed only
by ``wscl train`` (not by library calls) and the previous ones are restored afterwards.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopRequest:
    """Called by the trainer: the name of the signal received so far, or None."""

    def __init__(self):
        self.name: str | None = None

    def __call__(self) -> str | None:
        return self.name

    def _handle(self, signum, frame) -> None:
        self.name = signal.Signals(signum).name

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():  # Python delivers signals there only
            yield self
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
