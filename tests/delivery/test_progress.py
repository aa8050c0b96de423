"""The progress helper: plain log lines off a terminal, a rich bar on one."""

from __future__ import annotations

import logging

from digest.progress import progress


def test_plain_lines_when_not_on_a_terminal(caplog):
    caplog.set_level(logging.INFO, logger="digest.progress")
    with progress("sending", total=3, every=0.0, terminal=False) as bar:
        bar.advance(sent=1)
        bar.advance(skipped=1)
        bar.advance(sent=1)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[-1].startswith("sending: 3/3 (") and "sent 2, skipped 1, done in" in lines[-1]
    assert len(lines) == 4  # one per step (every=0) and the last


def test_a_bar_with_counts_on_a_terminal(capsys):
    with progress("sending", total=2, terminal=True) as bar:
        bar.advance(sent=1)
        bar.advance(sent=1)
    err = capsys.readouterr().err
    assert "sending" in err and "2/2" in err and "sent 2" in err
