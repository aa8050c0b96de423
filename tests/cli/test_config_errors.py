"""A setting that stops the process says so in one line naming it, never a traceback (issue 13:
38 to 134 lines). Each case runs the real command in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import POSTGRES_ADMIN_URL

pytestmark = pytest.mark.integration


def run(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digest.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)


def one_line(result: subprocess.CompletedProcess, variable: str) -> str:
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    return lines[0]


def test_an_unreachable_database(cli_env):
    line = one_line(run({**cli_env, "DIGEST_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/digest"}, "stats"),
                    "DIGEST_DATABASE_URL")
    assert "cannot connect" in line and "127.0.0.1:1" in line


def test_a_database_that_does_not_exist(cli_env):
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    line = one_line(run({**cli_env, "DIGEST_DATABASE_URL": f"{base}/no_such_database_here"}, "stats"),
                    "DIGEST_DATABASE_URL")
    assert "no_such_database_here" in line and "does not exist" in line and "createdb" in line


def test_a_missing_sqlite_folder(cli_env, tmp_path):
    line = one_line(run({**cli_env, "DIGEST_DATABASE_URL": f"sqlite:///{tmp_path}/missing/digest.db"}, "stats"),
                    "DIGEST_DATABASE_URL")
    assert f"{tmp_path}/missing" in line


def test_an_unwritable_outbox(cli_env, committed_db, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = {**cli_env, "DIGEST_OUTBOX_DIR": str(blocker / "outbox")}
    one_line(run(env, "subscribe", "ana@example.org", "--topics", "agents"), "DIGEST_OUTBOX_DIR")
    one_line(run(env, "send"), "DIGEST_OUTBOX_DIR")


def test_a_celery_worker_started_with_a_bad_value(cli_env):
    env = {**os.environ, **cli_env, "DIGEST_BATCH_SIZE": "0"}
    result = subprocess.run([sys.executable, "-m", "celery", "-A", "workers", "worker", "--loglevel=INFO"],
                            env=env, capture_output=True, text=True, timeout=60,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    one_line(result, "DIGEST_BATCH_SIZE")
