"""A run's live count: units done, failed and left, and an estimate of the time left, for every engine."""

from __future__ import annotations

import time


class UnitProgress:
    """Counts units as an engine reports them; ``line()`` is what is shown.

    ETA = (units left) x (mean seconds per unit finished in this run) / (units run at once): units resumed from a
    results folder count as done but not in the mean (they took no time here).
    """

    def __init__(self, total: int, resumed: int = 0, parallel: int = 1, stream=None, clock=time.monotonic) -> None:
        """``stream``: a file the line is written to, or a callable given each line; None shows nothing."""
        self.total, self.resumed, self.parallel = total, resumed, max(1, parallel)
        self.done = self.failed = 0
        self.busy = 0.0  # unit-seconds of the units finished here
        self.stream = stream
        self.clock = clock
        self.started = clock()

    @property
    def left(self) -> int:
        return self.total - self.resumed - self.done - self.failed

    def eta(self) -> float | None:
        """Seconds left, or None before any unit has finished here."""
        if not self.done:
            return None
        return self.left * (self.busy / self.done) / self.parallel

    def line(self) -> str:
        eta = self.eta()
        when = "" if eta is None else f"; ETA {_duration(eta)}"
        resumed = f" ({self.resumed} resumed)" if self.resumed else ""
        return (f"units: {self.resumed + self.done}/{self.total} done{resumed}, {self.failed} failed, {self.left} left"
                f"{when} [{_duration(self.clock() - self.started)}]")

    def finished(self, seconds: float, ok: bool = True) -> None:
        if ok:
            self.done += 1
            self.busy += seconds
        else:
            self.failed += 1
        self.show()

    def show(self) -> None:
        if callable(self.stream):
            self.stream(self.line())
        elif self.stream is not None:
            end = "\r" if self.stream.isatty() and self.left else "\n"
            self.stream.write(self.line().ljust(90) + end)
            self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 100:
        return f"{seconds:.0f} s"
    if seconds < 6000:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
