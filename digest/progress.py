"""Progress of a long run: a bar with counts and rate on a terminal, plain log lines otherwise.

    with progress("sending", total=1200) as bar:
        for ...:
            bar.advance(sent=1)          # counts shown beside the bar, summed over the run

On a terminal (stderr is a TTY) it draws a rich progress bar; in cron, Celery or CI logs it writes
one line every `every` seconds and a last line at the end, so a log never fills with redraws.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

log = logging.getLogger("digest.progress")


class _Progress:
    def __init__(self, label: str, total: int | None, every: float) -> None:
        self.label = label
        self.total = total
        self.every = every
        self.done = 0
        self.counts: Counter[str] = Counter()
        self.started = time.monotonic()
        self._last_line = self.started

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def describe(self) -> str:
        counts = ", ".join(f"{name} {value}" for name, value in self.counts.items())
        of = f"/{self.total}" if self.total is not None else ""
        return f"{self.label}: {self.done}{of} ({self.rate:.1f}/s){'; ' + counts if counts else ''}"

    def set_total(self, total: int | None) -> None:
        self.total = total

    def advance(self, steps: int = 1, **counts: int) -> None:
        self.done += steps
        self.counts.update({k: v for k, v in counts.items() if v})
        self._show()

    def _show(self) -> None:
        now = time.monotonic()
        if now - self._last_line >= self.every:
            self._last_line = now
            log.info("%s", self.describe())

    def finish(self) -> None:
        log.info("%s, done in %.1f s", self.describe(), time.monotonic() - self.started)


class _RichProgress(_Progress):
    def __init__(self, label: str, total: int | None, every: float) -> None:
        super().__init__(label, total, every)
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:.0f}/s"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[counts]}"),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = self._bar.add_task(label, total=total, rate=0.0, counts="")
        self._bar.start()

    def set_total(self, total: int | None) -> None:
        super().set_total(total)
        self._bar.update(self._task, total=total)

    def _show(self) -> None:
        counts = "  ".join(f"{name} {value}" for name, value in self.counts.items())
        self._bar.update(self._task, completed=self.done, rate=self.rate, counts=counts)

    def finish(self) -> None:
        self._show()
        self._bar.stop()


@contextmanager
def progress(label: str, total: int | None = None, every: float = 10.0, terminal: bool | None = None) -> Iterator[_Progress]:
    if terminal is None:
        terminal = sys.stderr.isatty()
    bar = _RichProgress(label, total, every) if terminal else _Progress(label, total, every)
    try:
        yield bar
    finally:
        bar.finish()
