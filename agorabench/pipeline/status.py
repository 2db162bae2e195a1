"""What `agora run` shows of its lanes while they run: each lane's current stage and how far it is.

Every line DVC and the stages print reaches `repro` (pipeline/run.py), tagged with its lane. LaneStatus
reads them: a "Running stage 'NAME'" line starts a stage, a progress line (agorabench/progress.py: "LABEL:
DONE/TOTAL UNIT ..., ETA ...") says how far it is. On a terminal it keeps one status row per lane at the
bottom of the screen (rich's Live), under the scrolling log; elsewhere the log lines, which carry the
lane's letter, are all there is, and `agora run > run.log` stays a plain log.
"""
from __future__ import annotations

import re
import sys
import time

# A progress line as agorabench/progress.py writes it (Progress.line).
PROGRESS_LINE = re.compile(r"^\s*(?P<label>.+?): (?P<done>\d+)/(?P<total>\d+) (?P<rest>.*ETA \S+)$")
STAGE_START = re.compile(r"^Running stage '([^']+)'")
# What DVC prints once a stage is done or needs no run: the lane is between stages.
STAGE_END = re.compile(r"^Updating lock file|didn't change|skipping run")


class LaneStatus:
    """Each lane's current stage, when it started and its latest progress line. `live`: None draws the
    status rows when stdout is a terminal; True or False decide it (tests)."""

    def __init__(self, lanes: list[str], live: bool | None = None, console=None):
        self.lanes = {lane: {"stage": None, "since": None, "progress": None, "done": False} for lane in lanes}
        if live is None:
            live = sys.stdout.isatty() and len(lanes) > 0
        self._live = None
        if live:
            from rich.console import Console
            from rich.live import Live

            # transient: when the run ends the status rows go, and the log above them stays.
            self._live = Live(self.table(), console=console or Console(), refresh_per_second=2, transient=True,
                              get_renderable=self.table)

    def feed(self, lane: str, line: str) -> None:
        """Read one line of `lane`'s output."""
        state = self.lanes.get(lane)
        if state is None:
            return
        if m := STAGE_START.match(line):
            state.update(stage=m[1], since=time.monotonic(), progress=None)
        elif STAGE_END.search(line):
            state.update(stage=None, since=None, progress=None)
        elif m := PROGRESS_LINE.match(line):
            state["progress"] = f"{m['label'].strip()}: {m['done']}/{m['total']} {m['rest']}"

    def finished(self, lane: str) -> None:
        """The lane's `dvc repro` has exited."""
        if lane in self.lanes:
            self.lanes[lane].update(stage=None, progress=None, done=True)

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(lane, stage, time in it, progress) per lane."""
        out = []
        for lane, s in self.lanes.items():
            if s["done"]:
                out.append((lane, "finished", "", ""))
            elif s["stage"] is None:
                out.append((lane, "between stages", "", ""))
            else:
                seconds = int(time.monotonic() - s["since"])
                out.append((lane, s["stage"], f"{seconds // 60}:{seconds % 60:02d}", s["progress"] or ""))
        return out

    def table(self):
        from rich.table import Table

        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        for column in ("lane", "stage", "in it", "progress"):
            table.add_column(column, overflow="ellipsis", no_wrap=True)
        for row in self.rows():
            table.add_row(*row)
        return table

    def print(self, text: str) -> None:
        """One log line: above the status rows on a terminal, a plain line elsewhere."""
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, flush=True)

    def __enter__(self) -> "LaneStatus":
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.stop()
