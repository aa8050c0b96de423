"""Fixtures shared by every test: a real database (PostgreSQL by default, SQLite with
DIGEST_TEST_DB=sqlite), one rolled-back transaction per test, and settings pointing at it.

Each test run gets a database of its own (digest_test_<pid>), so several runs can share the
machine's PostgreSQL. PostgreSQL unreachable is a failure, never a skip: CI must prove it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from digest.config import Settings, get_settings, load_settings
from digest.db import get_engine, make_engine, upgrade
from digest.models import Base

# Tests never assert on time (benchmarks do), so Hypothesis's per-example deadline is off: a loaded
# CI machine must not fail a property. On CI the examples are derandomized so a run is repeatable;
# developers' runs keep exploring new examples.
hypothesis_settings.register_profile("default", deadline=None)
hypothesis_settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "default")

POSTGRES_ADMIN_URL = os.environ.get("DIGEST_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("DIGEST_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BACKEND = os.environ.get("DIGEST_TEST_DB", "postgresql")
# At least 32 bytes, as DIGEST_SECRET_KEY must be (digest.config refuses shorter keys).
TEST_SECRET_KEY = "test-secret-key-that-signs-the-links-of-tests"
SEED_PAGE = Path(__file__).resolve().parents[2] / "shared" / "seed" / "daily-papers-page.txt"


def pytest_collection_modifyitems(config, items):
    if BACKEND == "sqlite":
        skip = pytest.mark.skip(reason="PostgreSQL-only; this pass runs on SQLite")
        for item in items:
            if "postgres_only" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> Iterator[str]:
    if BACKEND == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
        return
    name = f"digest_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{base}/{name}"
    get_engine.cache_clear()
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)  # the real migrations, not create_all: they are what operators run
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session whose work is rolled back after the test, even if the code under test commits."""
    connection = engine.connect()
    outer = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        connection.close()


@pytest.fixture
def session_factory(session: Session):
    """For library functions that open their own sessions: they all share the test's transaction."""

    class _Shared:
        def __call__(self) -> Session:
            return session

    return _Shared()


@pytest.fixture
def committed_db(engine: Engine) -> Iterator[Engine]:
    """For tests whose other processes (workers, web servers) must see committed rows: every
    table is emptied afterwards."""
    yield engine
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(text(f"DELETE FROM {table.name}"))


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return load_settings(
        database_url=database_url,
        broker_url=REDIS_URL,
        base_url="http://digest.test",
        secret_key=TEST_SECRET_KEY,
        outbox_dir=tmp_path / "outbox",
        sources="hf",
        hf_api_url="http://hf.test",
        arxiv_api_url="http://arxiv.test",
    )


@pytest.fixture
def cli_env(monkeypatch, database_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for running `digest` commands (CliRunner or subprocess) against the test database."""
    env = {
        "DIGEST_DATABASE_URL": database_url,
        "DIGEST_BROKER_URL": REDIS_URL,
        "DIGEST_BASE_URL": "http://digest.test",
        "DIGEST_SECRET_KEY": TEST_SECRET_KEY,
        "DIGEST_OUTBOX_DIR": str(tmp_path / "outbox"),
        "DIGEST_HF_API_URL": "http://hf.test",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()
