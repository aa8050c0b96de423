import pytest
from sqlalchemy import text

from digest.db import current_revision, ensure_schema, head_revision, make_engine
from digest.errors import SchemaError


def test_an_empty_database_is_created_on_first_use(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/new.db")
    ensure_schema(engine)
    assert current_revision(engine) == head_revision()


def test_an_outdated_schema_says_what_to_run(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/old.db")
    ensure_schema(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0000_older'"))
    with pytest.raises(SchemaError, match="run `digest db upgrade`"):
        ensure_schema(engine)


def test_a_foreign_database_is_not_touched(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/other.db")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE invoices (id INTEGER)"))
    with pytest.raises(SchemaError, match="no migration history"):
        ensure_schema(engine)
