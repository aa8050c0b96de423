"""`digest import` with CSV files as people have them (issue 13): each line stands alone, a bad
line costs that line only and is reported by its own number, the encoding is detected or given,
and the file is stored in chunks, so one line the database refuses cannot discard the others."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.cli import main
from digest.db import session_factory as make_session_factory
from digest.mail import OutboxTransport
from digest.models import Subscriber, SubscriberStatus, Topic
from digest.subscriptions import import_csv
from digest.subscriptions import importer as importer_module


@pytest.fixture
def outbox(tmp_path):
    return OutboxTransport(tmp_path / "sent")


def emails(session) -> list[str]:
    session.expire_all()
    found = list(session.scalars(select(Subscriber.email).order_by(Subscriber.email)))
    session.commit()
    return found


def test_a_latin_1_file_is_read_as_such_and_says_so(session, session_factory, settings, tmp_path):
    source = tmp_path / "latin1.csv"
    source.write_bytes("email,topics\nana@example.org,réseaux de neurones\nbo@example.org,diffusion\n"
                       "ce@exámple.org,génération\n".encode("latin-1"))  # (a non-ASCII local part needs SMTPUTF8: refused)
    report = import_csv(session_factory, source, settings, confirmed=True)
    assert report.added == 3 and report.errors == []
    assert any("Windows-1252/Latin-1" in note for note in report.notes)
    assert "réseaux de neurones" in set(session.scalars(select(Topic.query)))


def test_a_200_kb_cell_costs_its_line_only(session, session_factory, settings, tmp_path):
    rows = [f"r{n}@example.org,diffusion" for n in range(9)]
    rows.insert(4, "big@example.org," + "x" * 200_000)
    source = tmp_path / "big.csv"
    source.write_text("\n".join(rows) + "\n")
    report = import_csv(session_factory, source, settings, confirmed=True)
    assert report.added == 9
    assert [(line, "longer than" in message) for line, message in report.errors] == [(5, True)]
    assert "big@example.org" not in emails(session)


def test_a_stray_quote_on_line_5_of_11_costs_line_5_only(session, session_factory, settings, tmp_path):
    lines = ["email,topics"] + [f"r{n}@example.org,diffusion" for n in range(10)]
    lines[4] = 'r3@example.org,"diffusion; agents'
    source = tmp_path / "quote.csv"
    source.write_text("\n".join(lines) + "\n")
    report = import_csv(session_factory, source, settings, confirmed=True)
    assert report.added == 9
    assert [line for line, _ in report.errors] == [5] and "quote" in report.errors[0][1]
    assert len(emails(session)) == 9


def test_a_line_that_is_not_utf_8_in_a_utf_8_file_is_reported_not_guessed(session, session_factory, settings,
                                                                         tmp_path):
    source = tmp_path / "mixed.csv"
    source.write_bytes("ana@example.org,réseaux\n".encode() + "bo@example.org,génération\n".encode("latin-1")
                       + b"cy@example.org,diffusion\n")
    report = import_csv(session_factory, source, settings, confirmed=True)
    assert report.added == 2 and [line for line, _ in report.errors] == [2]
    assert "not valid UTF-8" in report.errors[0][1]


def test_the_encoding_can_be_given_and_a_wrong_name_is_one_line(cli_env, committed_db, tmp_path):
    source = tmp_path / "people.csv"
    source.write_bytes("ana@example.org,génération\n".encode("cp1252"))
    done = CliRunner().invoke(main, ["import", str(source), "--confirmed", "--encoding", "cp1252"])
    assert done.exit_code == 0, done.output
    assert "imported: 1 new" in done.output
    wrong = CliRunner().invoke(main, ["import", str(source), "--encoding", "klingon"])
    assert wrong.exit_code == 1
    assert wrong.output.strip().splitlines() == ["error: unknown encoding 'klingon': use e.g. --encoding utf-8, "
                                                 "cp1252 or latin-1"]


def test_new_addresses_in_bulk_and_known_ones_as_the_form_would(session, session_factory, settings, outbox, tmp_path,
                                                              monkeypatch):
    monkeypatch.setattr(importer_module, "CHUNK", 4)
    session.add(Subscriber(email="known@example.org", status=SubscriberStatus.pending))
    session.commit()
    rows = [f"r{n}@example.org,diffusion,Europe/Paris,6" for n in range(9)] + ["known@example.org,agents",
                                                                                 "r1@example.org,agents"]
    source = tmp_path / "mix.csv"
    source.write_text("\n".join(rows) + "\n")
    report = import_csv(session_factory, source, settings, transport=outbox)
    assert report.added == 9 and report.unchanged == 2 and report.errors == []
    # The nine new ones, the known pending one, and r1 again: its second line is a second request,
    # which the form answers with a second email too (the hourly cap allows two).
    assert report.confirmations == 11
    assert len(outbox.written) == 11
    session.expire_all()
    r0 = session.scalar(select(Subscriber).where(Subscriber.email == "r0@example.org"))
    assert r0.status == SubscriberStatus.pending and r0.timezone == "Europe/Paris" and r0.delivery_hour == 6
    assert r0.confirmations_sent == 1 and [t.query for t in r0.topics] == ["diffusion"]
    session.commit()


@pytest.mark.postgres_only
def test_an_address_inserted_meanwhile_costs_nothing(committed_db, settings, tmp_path, monkeypatch):
    """Another process subscribes one of the file's addresses between the chunk's lookup and its
    bulk insert: the chunk is stored one line at a time instead, and nothing is lost."""
    real = importer_module._insert_new

    def raced(session, rows, confirmed, now):
        with Session(committed_db) as other, other.begin():
            other.add(Subscriber(email="r2@example.org", status=SubscriberStatus.pending))
        return real(session, rows, confirmed, now)

    monkeypatch.setattr(importer_module, "_insert_new", raced)
    source = tmp_path / "race.csv"
    source.write_text("".join(f"r{n}@example.org,diffusion\n" for n in range(5)))
    report = import_csv(make_session_factory(committed_db), source, settings, confirmed=True)
    assert report.errors == [] and report.added == 4 and report.unchanged == 1
    with Session(committed_db) as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 5
        assert session.scalar(select(func.count()).select_from(Topic)) == 5
