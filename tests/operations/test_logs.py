"""DIGEST_LOG_FORMAT=json: one JSON object per line, from the CLI (a real subprocess)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

from digest.config import REPO_ROOT
from digest.operations import JsonFormatter, configure_logging


def test_a_record_is_one_json_line_with_the_ids_it_concerns():
    record = logging.LogRecord("digest.delivery", logging.WARNING, __file__, 1, "batch of %d failed", (3,), None)
    record.delivery_id = 42
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "batch of 3 failed" and entry["level"] == "warning"
    assert entry["logger"] == "digest.delivery" and entry["delivery_id"] == 42 and entry["time"].endswith("+00:00")


def test_an_exception_stays_on_its_one_line():
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line and "ValueError: bad\nvalue" in json.loads(line)["error"]


def test_the_cli_logs_json_lines_when_asked(cli_env, engine, tmp_path):
    env = {**os.environ, **cli_env, "DIGEST_LOG_FORMAT": "json", "DIGEST_SOURCES": f"file:{tmp_path / 'none.jsonl'}"}
    result = subprocess.run([sys.executable, "-m", "digest.cli", "fetch"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    lines = [line for line in result.stderr.splitlines() if line.startswith("{")]
    assert lines, result.stderr
    entries = [json.loads(line) for line in lines]
    failed = [e for e in entries if e["logger"] == "digest.fetch"]
    assert failed and "none.jsonl" in failed[0]["message"] and failed[0]["level"] == "warning"


def test_text_stays_the_default():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("text")
        assert len(root.handlers) == 1 and not isinstance(root.handlers[0].formatter, JsonFormatter)
        configure_logging("json")
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
    finally:
        root.handlers, root.level = saved[0], saved[1]
