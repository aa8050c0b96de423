"""digest search: what an operator types and reads."""

from __future__ import annotations

import json
from datetime import date

from click.testing import CliRunner
from sqlalchemy import update
from sqlalchemy.orm import Session

from digest.cli import main
from digest.models import Feedback, Subscriber
from tests.factories import make_paper, make_subscriber


def store(engine, *papers: dict) -> None:
    with Session(engine) as session:
        for fields in papers:
            make_paper(session, **fields)
        session.commit()


def reader_who_marked(engine, paper_id: str, *, liked: bool) -> None:
    """reader@example.org, topic "learning", who marked one paper (learning on, as by default)."""
    with Session(engine) as session:
        reader = make_subscriber(session, "reader@example.org", ["learning"])
        session.add(Feedback(subscriber_id=reader.id, paper_id=paper_id, liked=liked))
        session.execute(update(Subscriber).where(Subscriber.id == reader.id).values(feedback_version=1))
        session.commit()


def run(*args):
    return CliRunner().invoke(main, ["search", *args])


def test_search_prints_matches_in_digest_order_with_the_words(cli_env, committed_db):
    store(
        committed_db,
        {"id": "2611.00201", "title": "Continual Pre-Training", "abstract": "", "upvotes": 1},
        {"id": "2611.00202", "title": "Other", "abstract": "On pretraining and pre training.", "upvotes": 9},
        {"id": "2611.00203", "title": "Constraint training", "abstract": ""},
    )
    result = run("pretraining")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == " 2.0  2611.00201  Continual Pre-Training"
    assert lines[1] == "      matched: Pre-Training"
    assert lines[2] == " 1.0  2611.00202  Other"
    assert lines[3] == "      matched: pretraining, pre training"
    assert lines[-1] == "2 papers matched"


def test_search_json_has_id_title_score_and_matched_words(cli_env, committed_db):
    store(
        committed_db,
        {"id": "2611.00211", "title": "Robotic grasping", "abstract": "Robots grasp.", "edition": date(2026, 11, 25)},
        {"id": "2611.00212", "title": "Robot learning", "abstract": "", "edition": date(2026, 11, 26)},
    )
    everything = json.loads(run("robot*", "--json").output)
    assert [item["id"] for item in everything] == ["2611.00211", "2611.00212"]  # same score: newer id order
    first = everything[0]
    assert first["title"] == "Robotic grasping"
    assert first["score"] == 2.0
    assert first["matched"] == ["Robotic", "Robots"]
    assert first["highlights"] == {"title": [[0, 7]], "abstract": [[0, 6]]}
    edition = json.loads(run("robot*", "--json", "--edition", "2026-11-26").output)
    assert [item["id"] for item in edition] == ["2611.00212"]
    limited = json.loads(run("robot*", "--json", "--limit", "1").output)
    assert len(limited) == 1


def test_search_with_no_match_prints_an_empty_array(cli_env, committed_db):
    assert json.loads(run("nothing", "--json").output) == []
    assert run("nothing").output == "0 papers matched\n"


def test_a_bad_query_is_one_line_on_stderr_and_exit_1(cli_env, committed_db):
    result = CliRunner().invoke(main, ["search", "x (y"])
    assert result.exit_code == 1
    assert result.output == "error: topic 'x (y': unclosed parenthesis at column 3\n"


def test_bad_options_are_refused(cli_env, committed_db):
    assert run("x", "--edition", "26-11-2026").exit_code == 2
    assert run("x", "--limit", "0").exit_code == 2


def test_a_topic_that_starts_with_an_exclusion_reaches_the_parser(cli_env, committed_db):
    store(
        committed_db,
        {"id": "2611.00301", "title": "Diffusion for images", "abstract": ""},
        {"id": "2611.00302", "title": "Diffusion for video", "abstract": ""},
    )
    result = run("-video diffusion", "--json")
    assert result.exit_code == 0, result.output
    assert [paper["id"] for paper in json.loads(result.output)] == ["2611.00301"]


def test_search_for_a_reader_shows_their_order_and_why(cli_env, committed_db):
    store(
        committed_db,
        {"id": "2611.00221", "title": "Robot learning for grasping", "abstract": "Grasping objects with a robot arm.",
         "upvotes": 9},
        {"id": "2611.00222", "title": "Learning to rank documents", "abstract": "Ranking search results.", "upvotes": 5},
        {"id": "2611.00223", "title": "In-context learning in transformers",
         "abstract": "Transformers learn in context from examples in the prompt: in-context regression.", "upvotes": 1},
        {"id": "2611.00120", "title": "How transformers learn in context", "edition": date(2026, 11, 1),
         "abstract": "In-context learning of regression by transformers from prompt examples."},
    )
    reader_who_marked(committed_db, "2611.00120", liked=True)
    everyone = run("learning", "--edition", "2026-11-26")
    assert everyone.exit_code == 0, everyone.output
    assert everyone.output.splitlines()[0].endswith("2611.00221  Robot learning for grasping")
    theirs = run("learning", "--edition", "2026-11-26", "--for", "reader@example.org")
    assert theirs.exit_code == 0, theirs.output
    lines = theirs.output.splitlines()
    assert lines[0].endswith("2611.00223  In-context learning in transformers")
    assert lines[1] == "      matched: learning; Like: How transformers learn in context"
    assert lines[-1] == "3 papers matched"
    as_json = json.loads(run("learning", "--edition", "2026-11-26", "--for", "reader@example.org", "--json").output)
    assert as_json[0]["resembles"] == "How transformers learn in context"
    assert as_json[1]["reason"].startswith("matched: ")
    unknown = run("learning", "--for", "nobody@example.org")
    assert unknown.exit_code != 0 and "no subscriber" in unknown.output


def test_search_for_a_reader_says_which_matches_their_less_like_this_left_out(cli_env, committed_db):
    store(
        committed_db,
        {"id": "2611.00231", "title": "Web agents that book travel with tool calls",
         "abstract": "An agent plans tool calls in a browser to book flights, learning from task rewards."},
        {"id": "2611.00232", "title": "Learning protein folds with equivariant networks",
         "abstract": "Equivariant graph networks predict protein structure from sequences."},
        {"id": "2611.00130", "title": "Agents that learn to book flights in a browser", "edition": date(2026, 11, 1),
         "abstract": "A browser agent learns tool calls for booking flights and hotels from task rewards."},
    )
    reader_who_marked(committed_db, "2611.00130", liked=False)
    theirs = run("learning", "--edition", "2026-11-26", "--for", "reader@example.org")
    assert theirs.exit_code == 0, theirs.output
    lines = theirs.output.splitlines()
    assert lines[0].endswith("2611.00232  Learning protein folds with equivariant networks")
    assert "1 paper matched" in lines
    # The operator asking why a paper is missing from this reader's digest reads it here.
    at = lines.index("left out of this reader's digest (1):")
    assert lines[at + 1].endswith("2611.00231  Web agents that book travel with tool calls")
    assert lines[at + 2] == ("      much nearer a paper they marked \"Less like this\" than any they liked: "
                             "Agents that learn to book flights in a browser")
    as_json = json.loads(run("learning", "--edition", "2026-11-26", "--for", "reader@example.org", "--json").output)
    assert [(item["id"], item["left_out"]) for item in as_json] == [("2611.00232", False), ("2611.00231", True)]
    assert as_json[1]["reason"].endswith("Agents that learn to book flights in a browser")
    # Without --for nothing is left out, and nothing says so.
    everyone = run("learning", "--edition", "2026-11-26")
    assert "left out" not in everyone.output and everyone.output.splitlines()[-1] == "2 papers matched"
