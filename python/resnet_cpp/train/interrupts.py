"""SIGINT and SIGTERM during a training step, deferred to its end: :class:`InterruptGuard`.

A half-applied optimizer update, or BN statistics updated for a batch that a resume would
replay, would break exact resume; so the loop runs each step inside
:meth:`InterruptGuard.critical`, and a signal arriving then is raised as a
KeyboardInterrupt when the step has finished.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading

__all__ = ["InterruptGuard"]


class InterruptGuard:
    """Turns SIGINT and SIGTERM into a KeyboardInterrupt at a safe point (main thread only).

    The first signal is deferred while a step runs (``critical``) and raised when it ends;
    ``signum`` records it. A second one, while the first is pending or being handled (the
    checkpoint save included), kills the process at once with that signal.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.in_step = False
        self.pending = False
        self.signum: int | None = None
        self._old: dict = {}

    def _handler(self, signum, frame) -> None:
        if self.signum is not None:  # the second signal: no more waiting
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        if self.in_step:
            self.pending = True
        else:
            raise KeyboardInterrupt

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}

    @contextlib.contextmanager
    def critical(self):
        """A signal arriving inside the block is raised when the block has finished."""
        self.in_step = True
        try:
            yield
        finally:
            self.in_step = False
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt
