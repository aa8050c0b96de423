"""digest preview EMAIL: the operator sees a subscriber's digest without sending anything."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from sqlalchemy.orm import Session

from digest.cli import main
from tests.factories import make_paper, make_subscriber
from tests.mail.helpers import EDITION, Elements


def _store(engine, **subscriber):
    with Session(engine) as session:
        make_paper(session, id="2611.90001", title="Scaling pretraining data <b>filters</b>", edition=EDITION,
                   abstract="We study pretraining at scale.", authors=["Ana Ruiz"], upvotes=12)
        make_paper(session, id="2611.90002", title="Diffusion for robots", edition=EDITION,
                   abstract="A diffusion policy.", authors=["Bo Li"])
        make_paper(session, id="2611.90003", title="Older pretraining paper", edition=EDITION.replace(day=20),
                   abstract="Pretraining, again.")
        make_subscriber(session, **subscriber)
        session.commit()


def test_preview_writes_html_and_text_and_prints_their_paths(cli_env, committed_db, tmp_path):
    _store(committed_db, email="ana@example.org", topics=["pretraining"])
    result = CliRunner().invoke(main, ["preview", "Ana@Example.org", "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "subject: 1 new paper on pretraining · Nov 26"
    html_path, text_path = Path(lines[-2]), Path(lines[-1])
    assert html_path.suffix == ".html" and text_path.suffix == ".txt"
    html = html_path.read_text()
    assert "&lt;b&gt;filters&lt;/b&gt;" in html and "<b>" not in html
    assert "Older pretraining paper" not in html  # another edition
    assert "http://digest.test/unsubscribe/" in html
    assert "Scaling pretraining data <b>filters</b>" in text_path.read_text()
    assert "1 new paper matched your topics" in Elements(html).visible_text
    assert not (tmp_path / "outbox").exists() or not any((tmp_path / "outbox").iterdir())  # nothing sent


def test_preview_of_an_older_edition_and_of_an_empty_one(cli_env, committed_db, tmp_path):
    _store(committed_db, email="bo@example.org", topics=["again"])
    result = CliRunner().invoke(main, ["preview", "bo@example.org", "--edition", "2026-11-20", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Older pretraining paper" in Path(result.output.splitlines()[-2]).read_text()
    result = CliRunner().invoke(main, ["preview", "bo@example.org", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "nothing matched" in result.output
    assert "Nothing matched your topics today" in Path(result.output.splitlines()[-2]).read_text()


def test_preview_of_an_unknown_subscriber_or_edition_is_one_line(cli_env, committed_db, tmp_path):
    _store(committed_db, email="cy@example.org", topics=["pretraining"])
    result = CliRunner().invoke(main, ["preview", "nobody@example.org", "--out", str(tmp_path)])
    assert result.exit_code == 1 and result.output.startswith("error: no subscriber")
    result = CliRunner().invoke(main, ["preview", "cy@example.org", "--edition", "2020-01-01", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "no papers in the edition of 2020-01-01" in result.output
