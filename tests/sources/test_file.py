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
