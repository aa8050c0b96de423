"""Make samples/papers.jsonl from the reference Daily Papers page (shared/seed/daily-papers-page.txt).

The page gives title, abstract, author count, date and upvotes. It gives no arXiv ids, author
names or categories, so the sample invents them, deterministically and visibly:
- id: YYMM.NNNNN from the paper's date and its position on the page (not the real arXiv id);
- authors: "Author A. One"... as many as the page counts (not the real names);
- categories: cs.CV for vision papers, cs.CL for language papers, cs.LG otherwise, by title words.
Run: python scripts/make_sample.py ../shared/seed/daily-papers-page.txt samples/papers.jsonl
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

PAGE_YEAR = 2025  # the page is dated "Oct 27"; dates without a year are that year's
AUTHORS_LINE = re.compile(r"^\s*•\s*(\d+)\s+authors?$")
DATE_LINE = re.compile(r"^([A-Z][a-z]{2}) (\d{1,2})(?:, (\d{4}))?(?:\s+(\d+))?$")
FIRST = ["Ana", "Bo", "Chen", "Dara", "Emil", "Fatima", "Gao", "Hiro", "Ines", "Jonas", "Kavya", "Luca"]
LAST = ["Ruiz", "Li", "Okafor", "Novak", "Sato", "Müller", "Haddad", "Silva", "Kim", "Dubois", "Rossi", "Wang"]
VISION = re.compile(r"\b(image|video|visual|vision|3d|diffusion|pixel|scene|camera)", re.I)
LANGUAGE = re.compile(r"\b(language|text|llms?|bert|speech|translation|token|instruction|dialog)", re.I)


def invented_authors(count: int, seed: int) -> list[str]:
    return [f"{FIRST[(seed + i) % len(FIRST)]} {LAST[(seed * 7 + i * 5) % len(LAST)]}" for i in range(count)]


def category(title: str) -> list[str]:
    if VISION.search(title):
        return ["cs.CV"]
    if LANGUAGE.search(title):
        return ["cs.CL"]
    return ["cs.LG"]


def parse(page: str) -> list[dict]:
    lines = [line.strip() for line in page.splitlines() if line.strip()]
    start = lines.index("byAK and the research community") + 2  # skip the page's own date
    papers, i = [], start
    while i < len(lines):
        title, abstract = lines[i], lines[i + 1]
        count = AUTHORS_LINE.match(lines[i + 2]) if i + 2 < len(lines) else None
        if count:  # the page omits authors and date for some papers
            if lines[i + 3] != "·" or not DATE_LINE.match(lines[i + 4]):
                raise ValueError(f"unexpected layout near {title[:60]!r}")
            month, mday, year, upvotes = DATE_LINE.match(lines[i + 4]).groups()
            authors, i = int(count.group(1)), i + 5
        else:
            month, mday, year, upvotes = "Oct", "27", None, None
            authors, i = 0, i + 2
        published = datetime.strptime(f"{month} {mday} {year or PAGE_YEAR}", "%b %d %Y").replace(tzinfo=timezone.utc)
        n = len(papers)
        papers.append(
            {
                "id": f"{published:%y%m}.{10000 + (n * 373) % 89999:05d}",
                "title": title,
                "abstract": abstract,
                "authors": invented_authors(authors, n),
                "categories": category(title),
                "published_at": published.isoformat(),
                "upvotes": int(upvotes or 0),
            }
        )
    return papers


def main(source: str, target: str) -> None:
    papers = parse(Path(source).read_text(encoding="utf-8"))
    ids = [p["id"] for p in papers]
    assert len(ids) == len(set(ids)), "invented ids collide"
    with open(target, "w", encoding="utf-8") as out:
        for paper in papers:
            out.write(json.dumps(paper, ensure_ascii=False) + "\n")
    print(f"wrote {len(papers)} papers to {target}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
