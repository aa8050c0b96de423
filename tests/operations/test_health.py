"""/healthz and /readyz against real databases: a PostgreSQL database of this test's own that goes
away (connections refused and cut) and comes back, a schema left behind, a broker that is down."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from alembic import command
from fastapi.testclient import TestClient

from digest.config import load_settings
from digest.db import alembic_config, make_engine, session_factory, upgrade
from digest.web import create_app
from tests.conftest import POSTGRES_ADMIN_URL, REDIS_URL, TEST_SECRET_KEY


def readyz(client: TestClient):
    answer = client.get("/readyz")
    return answer.status_code, answer.json()


@pytest.fixture
def own_database():
    """A database only this test uses, so that it can be made unavailable without touching the
    shared server: ALLOW_CONNECTIONS false and its open connections terminated."""
    name = f"digest_ready_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield name, f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def set_available(name: str, available: bool) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"true" if available else "false"}')
        if not available:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


@pytest.mark.postgres_only
def test_readyz_is_503_while_the_database_is_away_and_200_when_it_is_back(own_database, tmp_path):
    name, url = own_database
    settings = load_settings(database_url=url, secret_key=TEST_SECRET_KEY, outbox_dir=tmp_path / "outbox")
    app = create_app(settings)  # its own engine and pool, as `digest web` has
    with TestClient(app) as client:
        assert readyz(client) == (200, {"ready": True, "checks": {"database": "ok"}})

        set_available(name, False)
        status, body = readyz(client)
        assert status == 503 and body["ready"] is False
        assert body["checks"]["database"].startswith("the database does not answer")
        assert client.get("/healthz").status_code == 200  # the process itself still serves
        assert readyz(client)[0] == 503  # and stays unready while the database is away

        set_available(name, True)
        assert readyz(client) == (200, {"ready": True, "checks": {"database": "ok"}})
    app.state.sessions.kw["bind"].dispose()


def test_readyz_names_a_schema_that_is_not_current(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(alembic_config(engine), "0001_initial")
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'old.db'}", secret_key=TEST_SECRET_KEY)
    with TestClient(create_app(settings, sessions=session_factory(engine))) as client:
        status, body = readyz(client)
        assert status == 503
        assert body["checks"]["database"].startswith("the schema is at 0001_initial")
        assert "digest db upgrade" in body["checks"]["database"]
        upgrade(engine)
        assert readyz(client)[0] == 200
    engine.dispose()


def test_readyz_checks_the_broker_only_when_one_is_configured(settings, session_factory):
    with TestClient(create_app(settings, sessions=session_factory)) as client:
        assert readyz(client) == (200, {"ready": True, "checks": {"database": "ok", "broker": "ok"}})
    down = settings.model_copy(update={"broker_url": "redis://127.0.0.1:9/0"})
    with TestClient(create_app(down, sessions=session_factory)) as client:
        status, body = readyz(client)
        assert status == 503 and body["checks"]["database"] == "ok"
        assert body["checks"]["broker"] == "the broker at 127.0.0.1 does not answer (OperationalError)"
    laptop = load_settings(database_url=settings.database_url, secret_key=TEST_SECRET_KEY)  # no DIGEST_BROKER_URL
    assert not laptop.broker_configured
    with TestClient(create_app(laptop, sessions=session_factory)) as client:
        assert readyz(client) == (200, {"ready": True, "checks": {"database": "ok"}})


def test_neither_probe_needs_a_token_or_shows_an_address(settings, session_factory, counting):
    guarded = settings.model_copy(update={"metrics": True, "metrics_token": "scrape-token-123",
                                          "metrics_flush_interval": 3600})
    with TestClient(create_app(guarded, sessions=session_factory)) as client:
        for path in ("/healthz", "/readyz"):
            answer = client.get(path)
            assert answer.status_code == 200
            assert REDIS_URL not in answer.text and "@" not in answer.text and "scrape-token" not in answer.text
