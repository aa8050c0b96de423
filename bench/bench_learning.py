"""Learning benchmark: the per-reader model's speed at scale, and its quality on the real corpus.

    python bench/bench_learning.py                     # speed: 100,000 subscribers, 20% with marks
    python bench/bench_learning.py --quality           # quality: the corpus protocol, offline
    python bench/bench_learning.py -n 20000 --papers 500 --store 10000

Speed: N subscribers, a share of them (--marked-share, default 0.2) with ~15 marks (Poisson) on
papers of a store of --store papers, an edition of --papers papers; for every reader with marks
the model is fitted and the edition scored (rerank with suggestions), on one core, as compose
does per batch: marked papers vectorized once per process, each marked paper compared with the
edition once, models cached by (subscriber, feedback_version). A second pass with unchanged
versions shows that nobody is refitted. Prints seconds and peak memory (target < 60 s, < 2 GB).

Quality (--quality): the protocol of ../shared/corpus/README.md without the web or SMTP (the real
pipeline's version is bench/bench_relevance.py): one listing day per simulated day, the reader's
typed topics, each day "More like this" on each of the first 10 cards that is relevant and "Less
like this" on the others; a twin never marks. From day 6 on it counts relevant / not relevant
among the first 10 cards of each, per persona, and prints the ratio and both precisions.
Not a test: nothing here asserts on figures. The machine may be shared: times are noisy.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from digest.matching import EditionIndex, match_subscribers, rank  # noqa: E402
from digest.models import Paper  # noqa: E402
from digest.relevance import EditionFeatures, FeatureCache, ModelCache, fit, rerank  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus"
CARDS = 10  # the protocol counts the first 10 cards
FIRST_COUNTED_DAY = 6


def _paper(row: dict) -> Paper:
    return Paper(id=row["id"], title=row["title"], abstract=row.get("summary") or "",
                 authors=list(row.get("authors") or []), categories=list(row.get("categories") or []),
                 upvotes=int(row.get("upvotes") or 0), edition=date.fromisoformat(row["date"]),
                 published_at=datetime.fromisoformat(row["date"]).replace(tzinfo=timezone.utc),
                 keywords=[], sources=["hf"], github_repo=row.get("github_repo"))


def quality(corpus: Path = CORPUS, verbose: bool = False) -> list[dict]:
    papers = [_paper(json.loads(line)) for line in (corpus / "papers.jsonl").read_text().splitlines() if line.strip()]
    personas = json.loads((corpus / "personas.json").read_text())
    days: dict[date, list[Paper]] = {}
    for paper in papers:
        days.setdefault(paper.edition, []).append(paper)
    cache = FeatureCache()
    editions = {}
    for day, day_papers in sorted(days.items()):
        day_papers.sort(key=lambda p: p.id)
        editions[day] = (EditionIndex.build(day_papers), EditionFeatures.build(day_papers))
    results = []
    for persona in personas:
        relevant = {j if isinstance(j, str) else j.get("id") for j in _judged(persona["judgments"])}
        topics = persona["typed_topics"]
        liked: list[Paper] = []
        disliked: list[Paper] = []
        counts = {"learner": [0, 0], "twin": [0, 0]}
        suggested = [0, 0]
        for number, day in enumerate(sorted(days), start=1):
            index, features = editions[day]
            matches = rank(index, topics)
            cache.add([p for p in liked + disliked if p.id not in cache])
            model = fit(liked, disliked, cache.matrix)
            shown = rerank(matches, len(matches), features, model, learn=True, suggest=True, limit=CARDS)
            twin = matches[:CARDS]
            for match in shown:
                (liked if match.paper.id in relevant else disliked).append(match.paper)
            if number >= FIRST_COUNTED_DAY:
                for name, cards in (("learner", shown), ("twin", twin)):
                    for match in cards:
                        counts[name][0 if match.paper.id in relevant else 1] += 1
                for match in shown:
                    if not match.topics:
                        suggested[0 if match.paper.id in relevant else 1] += 1
            if verbose:
                print(day, [(m.paper.id in relevant, bool(m.topics)) for m in shown], file=sys.stderr)
        (lr, ln), (tr, tn) = counts["learner"], counts["twin"]
        results.append({
            "persona": persona["name"], "learner_relevant": lr, "learner_not": ln, "twin_relevant": tr,
            "twin_not": tn, "ratio": lr / tr if tr else float("inf"),
            "learner_precision": lr / (lr + ln) if lr + ln else 0.0,
            "twin_precision": tr / (tr + tn) if tr + tn else 0.0,
            "suggestions_relevant": suggested[0], "suggestions_not": suggested[1],
        })
    return results


def _judged(judgments):
    if isinstance(judgments, dict):
        return [k for k, v in judgments.items() if v]
    return [j for j in judgments if (j.get("grade", 1) if isinstance(j, dict) else 1)]


def print_quality(results: list[dict]) -> None:
    print(f"quality: corpus protocol, days {FIRST_COUNTED_DAY}+ (first {CARDS} cards), offline")
    for r in results:
        print(f"  {r['persona']:32s} learner {r['learner_relevant']:3d} relevant / {r['learner_not']:3d} not"
              f"  twin {r['twin_relevant']:3d} / {r['twin_not']:3d}  ratio {r['ratio']:.2f}"
              f"  precision {r['learner_precision']:.2f} vs twin {r['twin_precision']:.2f}"
              f"  (suggestions {r['suggestions_relevant']} relevant / {r['suggestions_not']} not)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality", action="store_true", help="the corpus protocol instead of the speed run")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("-n", "--subscribers", type=int, default=100_000)
    parser.add_argument("--marked-share", type=float, default=0.2)
    parser.add_argument("--marks", type=float, default=15.0, help="marks per marked reader, on average")
    parser.add_argument("--papers", type=int, default=1000, help="papers in the edition")
    parser.add_argument("--store", type=int, default=30_000, help="papers in the store")
    args = parser.parse_args()
    if args.quality:
        print_quality(quality(verbose=args.verbose))
        return
    speed(args)


if __name__ == "__main__":
    main()
