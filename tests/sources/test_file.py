import json

import pytest

from digest.errors import SourceError
from digest.sources.file import FileSource
from tests.factories import sample_records


def test_the_bundled_sample_reads_whole(tmp_path):
    from digest.config import SAMPLE_PAPERS

    result = FileSource(SAMPLE_PAPERS).fetch(None)
    assert len(result.papers) == len(sample_records()) == 98
    assert result.skipped == []


def test_bad_lines_are_reported_by_number_and_the_rest_kept(tmp_path):
    path = tmp_path / "papers.jsonl"
    lines = [
        json.dumps({"id": "2611.00001", "title": "Good"}),
        "{not json",
        json.dumps({"id": "2611.00002"}),
        "",
        json.dumps({"id": "2611.00003v4", "title": "Versioned", "authors": ["A", 3]}),
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    result = FileSource(path).fetch(None)
    assert [p.id for p in result.papers] == ["2611.00001", "2611.00003"]
    assert result.papers[1].authors == ["A"]
    assert [s.split(":")[1] for s in result.skipped] == ["2", "3"]


def test_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(SourceError, match="cannot read"):
        FileSource(tmp_path / "missing.jsonl").fetch(None)


def test_every_field_is_untrusted(tmp_path):
    path = tmp_path / "papers.jsonl"
    lines = [
        {"id": "2611.00001", "title": "Good", "upvotes": "many", "github_repo": 3, "categories": "cs.LG"},
        {"id": "2611.00002", "title": 7},
        {"id": "2611.00003", "title": "Authors as text", "authors": "Ana Ruiz"},
        {"id": 2611.00004, "title": "Number id"},
        {"id": "2611.00005", "title": "Nul\x00 in title", "abstract": "\x00"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")
    result = FileSource(path).fetch(None)
    assert [p.id for p in result.papers] == ["2611.00001", "2611.00005"]
    assert result.papers[1].title == "Nul in title" and result.papers[1].abstract == ""
    assert [s.split(": ", 1)[1] for s in result.skipped] == [
        "title: Input should be a valid string, got int",
        "authors: Input should be a valid list, got str",
        "id: Input should be a valid string, got float",
    ]
    assert len(result.ignored) == 3  # upvotes, github_repo, categories of the first line
