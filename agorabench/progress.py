"""How a long step says how far it is: generation, answering a benchmark's items, judging datasets.

On a terminal, a bar (rich). Anywhere else (`agora run`'s lanes, DVC logs, CI) a plain line on stderr
at least every `AGORA_PROGRESS_INTERVAL_S` seconds (30 by default) while the step runs, with what is
done out of the total, the rate and the time left:

    smollm2 instance_generation math: 3/16 valid (answers 12, cached 0), 0.05/s, ETA 4m20s

A step that ends sooner prints nothing: its summary line says what happened. Lines go to stderr, so
a command's results on stdout stay clean.
"""
from __future__ import annotations

import os
import sys
import threading
import time


def _interval_s() -> float:
    return float(os.environ.get("AGORA_PROGRESS_INTERVAL_S", "30"))


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """`done` out of `total` `unit`; `mode`: None picks a bar on a terminal and lines elsewhere,
    "bar" or "lines" force one, False is silent (tests, callers that report on their own)."""

    def __init__(self, label: str, total: int, unit: str = "done", mode: str | bool | None = None,
                 stream=None):
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stderr
        if os.environ.get("AGORA_QUIET") == "1":  # agora -q
            mode = False
        elif mode is None:
            mode = "bar" if self.stream.isatty() else "lines"
        self.mode = mode or None
        self.done, self.info = 0, ""
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._bar = self._ticker = None
        if self.mode == "bar":
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, \
                TimeElapsedColumn, TimeRemainingColumn

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                     transient=False)
            self._task = self._bar.add_task(label, total=total, info="")
            self._bar.start()
        elif self.mode == "lines" and total > 0:
            # A thread, not a check on each update: one batch of a slow model can take minutes.
            self._ticker = threading.Thread(target=self._tick, name=f"progress {label}", daemon=True)
            self._ticker.start()

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def update(self, done: int, info: str | None = None) -> None:
        self.done = done
        if info is not None:
            self.info = info
        if self._bar:
            self._bar.update(self._task, completed=min(done, self.total), info=self.info)

    def line(self) -> str:
        """What a progress line says now."""
        elapsed = time.monotonic() - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = max(self.total - self.done, 0)
        eta = _duration(left / rate) if rate > 0 else "unknown"
        info = f" ({self.info})" if self.info else ""
        return (f"{self.label}: {self.done}/{self.total} {self.unit}{info}, {rate:.2f}/s, "
                f"{_duration(elapsed)} so far, ETA {eta}")

    def _tick(self) -> None:
        interval = _interval_s()
        while not self._stop.wait(interval):
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        self._stop.set()
        if self._bar:
            self._bar.stop()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
