"""Regenerate digest/migrations/versions/0001_initial.py from models.py.

Until the first release there is one migration; after it, add revisions with
`alembic revision --autogenerate` instead of running this.
"""

import tempfile
from pathlib import Path

from alembic import command

from digest.db import MIGRATIONS, alembic_config, make_engine

target = MIGRATIONS / "versions" / "0001_initial.py"
target.unlink(missing_ok=True)
with tempfile.TemporaryDirectory() as folder:
    engine = make_engine(f"sqlite:///{folder}/empty.db")
    command.revision(alembic_config(engine), message="initial schema", autogenerate=True, rev_id="0001_initial")
print(f"wrote {target}")
