"""Per-step progress of the training loop and of ``resnet-cpp predict``.

On a terminal (``sys.stderr.isatty()``) it is a tqdm bar. Anywhere else (a pipe, a log
file, a batch job) nothing is printed per step, so that logs hold no carriage-return
frames: only when ``interval`` (60 s) has passed since the start or the last such line does
a step print one plain line, so that a very long epoch still shows life. Output goes to
stderr, leaving stdout to results. Disabled, it prints nothing.
"""
from __future__ import annotations

import sys
import time
from typing import Callable

__all__ = ["Progress"]


class Progress:
    """Progress through ``total`` steps named ``desc`` (``initial`` of them already done)."""

    def __init__(self, total: int, desc: str, *, enabled: bool = True, initial: int = 0,
                 interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.desc, self.done, self.enabled = total, desc, initial, enabled
        self._interval, self._clock = interval, clock
        self._last = clock()
        self._bar = None
        if enabled and sys.stderr is not None and sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:  # a dependency of the package; without it, plain lines
                return
            self._bar = tqdm(total=total, initial=initial, desc=desc, unit="batch",
                             dynamic_ncols=True, leave=True)

    def update(self, postfix: dict | None = None) -> None:
        """One more step done; ``postfix`` ({name: text}) is shown beside the count."""
        self.done += 1
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(1)
            return
        now = self._clock()
        if self.enabled and now - self._last >= self._interval:
            self._last = now
            items = "".join(f", {k}={v}" for k, v in (postfix or {}).items())
            print(f"{self.desc}: {self.done}/{self.total} batches{items}", file=sys.stderr,
                  flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
