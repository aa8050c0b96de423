"""Benchmark: every subscriber's ranked matches for one edition, on one core.

Target (issue 3): 100,000 subscribers with 1 to 10 topics each, drawn from about 5,000 distinct
topics (many shared), against an edition of 1,000 papers: under 5 seconds and under 1 GB.

Everything is made from the bundled sample (the reference Daily Papers page): papers are recombined
from its titles and abstract sentences, topics from its words, word pairs and phrases, in every form
the query language has. That page is one subfield (77 of its 98 papers are about pre-training),
while a day's 1,000 papers span many: the benchmark writes the sample out in ten subfields, each
with its own content words (a syllable in front of each), and draws topics from all ten. Seeded,
so runs compare.

    python bench/bench_matching.py [--subscribers 100000] [--papers 1000] [--topics 5000]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import re
import resource
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digest.config import SAMPLE_PAPERS  # noqa: E402
from digest.matching import EditionIndex, match_subscribers  # noqa: E402

STOPWORDS = set(
    """a an the of and or in on for to with by from as at is are was were be been this that these those
    we our it its their which while can via into than such also has have not but both more most all each
    over under between using use based new show shows results paper approach method methods propose
    proposed however through across within without only other one two three model models""".split()
)


def load_sample() -> list[dict]:
    return [json.loads(line) for line in Path(SAMPLE_PAPERS).read_text(encoding="utf-8").splitlines() if line]


SUBFIELDS = ["", "zo", "ka", "mi", "ve", "tu", "ra", "no", "pe", "li"]
_CONTENT_WORD = re.compile(r"\b[A-Za-z][A-Za-z]{2,}\b")


def in_subfield(text: str, marker: str) -> str:
    """The same text as written in another subfield: every content word gets the subfield's
    syllable, so subfields share grammar and stop words but not topics."""
    if not marker:
        return text
    return _CONTENT_WORD.sub(lambda m: m.group() if m.group().lower() in STOPWORDS else marker + m.group(), text)


def make_papers(records: list[dict], count: int, rng: random.Random) -> list[SimpleNamespace]:
    sentences = [s for r in records for s in re.split(r"(?<=[.!?])\s+", r["abstract"]) if len(s) > 30]
    heads = [r["title"].split(":")[0] for r in records]
    tails = [r["title"].split(":", 1)[1] for r in records if ":" in r["title"]]
    authors = sorted({a for r in records for a in r["authors"]})
    categories = ["cs.LG", "cs.CL", "cs.CV", "cs.AI", "cs.RO", "stat.ML", "eess.AS"]
    start = datetime(2026, 11, 20, tzinfo=timezone.utc)
    papers = []
    for n in range(count):
        title = rng.choice(heads) + (":" + rng.choice(tails) if rng.random() < 0.6 else "")
        marker = SUBFIELDS[n % len(SUBFIELDS)]
        papers.append(
            SimpleNamespace(
                id=f"2611.{n:05d}",
                title=in_subfield(title, marker),
                abstract=in_subfield(" ".join(rng.sample(sentences, rng.randint(5, 10))), marker),
                authors=rng.sample(authors, rng.randint(1, 8)),
                categories=rng.sample(categories, rng.randint(1, 2)),
                upvotes=int(rng.expovariate(1 / 8)),
                published_at=start + timedelta(minutes=rng.randint(0, 60 * 24 * 5)),
            )
        )
    return papers


def make_topics(records: list[dict], count: int, rng: random.Random) -> list[str]:
    words: Counter[str] = Counter()
    pairs: Counter[str] = Counter()
    triples: Counter[str] = Counter()
    for r in records:
        tokens = re.findall(r"[A-Za-z][\w-]*[A-Za-z0-9]", r["title"] + " " + r["abstract"])
        for i, token in enumerate(tokens):
            if token.lower() in STOPWORDS or len(token) < 3:
                continue
            words[token] += 1
            if i + 1 < len(tokens) and tokens[i + 1].lower() not in STOPWORDS:
                pairs[f"{token} {tokens[i + 1]}"] += 1
                if i + 2 < len(tokens) and tokens[i + 2].lower() not in STOPWORDS:
                    triples[f"{token} {tokens[i + 1]} {tokens[i + 2]}"] += 1
    unigrams = [w for w, c in words.items() if c >= 2]
    bigrams = [p for p, c in pairs.items() if c >= 2] or list(pairs)
    phrases = bigrams + list(triples)
    authors = sorted({a for r in records for a in r["authors"]})
    marker = ""

    def content(words: list[str]) -> str:
        return in_subfield(rng.choice(words), marker)

    forms = [
        (30, lambda: content(unigrams)),
        (20, lambda: content(bigrams)),
        (15, lambda: f'"{content(phrases)}"'),
        (10, lambda: f'{content(unigrams)} OR "{content(bigrams)}"'),
        (7, lambda: content(unigrams)[: rng.randint(4, 7)] + "*"),
        (6, lambda: f"{content(bigrams)} -{content(unigrams)}"),
        (5, lambda: f"({content(unigrams)} OR {content(unigrams)}) {content(unigrams)}"),
        (3, lambda: f'author:"{rng.choice(authors)}"'),
        (2, lambda: f"title:{content(unigrams)}"),
        (2, lambda: f"category:{rng.choice(['cs.LG', 'cs.CL', 'cs.CV', 'cs.RO'])} {content(unigrams)}"),
    ]
    weights = [w for w, _ in forms]
    topics: dict[str, None] = {}
    while len(topics) < count:
        marker = rng.choice(SUBFIELDS)
        (make,) = rng.choices([f for _, f in forms], weights)
        topics[make()] = None
    return list(topics)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--papers", type=int, default=1_000)
    parser.add_argument("--topics", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    records = load_sample()
    papers = make_papers(records, args.papers, rng)
    vocabulary = make_topics(records, args.topics, rng)
    # Popularity is skewed, as real interests are: a few topics are everyone's, most are a few people's.
    popularity = [1 / (rank + 1) ** 0.8 for rank in range(len(vocabulary))]
    topics_by_subscriber = {}
    for subscriber in range(1, args.subscribers + 1):
        chosen = rng.choices(vocabulary, popularity, k=rng.randint(1, 10))
        topics_by_subscriber[subscriber] = list(dict.fromkeys(chosen))
    distinct = {t for topics in topics_by_subscriber.values() for t in topics}
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # CPU time of this process is the figure: on a shared machine wall time also counts the
    # other processes' turns. Both are printed.
    wall_started, started = time.perf_counter(), time.process_time()
    index = EditionIndex.build(papers)
    built = time.process_time()
    digests = match_subscribers(index, topics_by_subscriber)
    finished, wall_finished = time.process_time(), time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    matched_papers = sum(len(matches) for matches in digests.values())
    per_topic = [len(index.topic_cache[t].papers) if index.topic_cache.get(t) else 0 for t in distinct]
    topic_counts = [len(t) for t in topics_by_subscriber.values()]
    print(f"subscribers:          {args.subscribers:,} ({min(topic_counts)} to {max(topic_counts)} topics each, "
          f"{sum(topic_counts):,} subscriptions)")
    print(f"papers:               {len(papers):,}")
    print(f"distinct topics:      {len(distinct):,} used (vocabulary {len(vocabulary):,})")
    print(f"papers per topic:     {sum(per_topic) / len(per_topic):.1f} on average, "
          f"median {sorted(per_topic)[len(per_topic) // 2]}, most {max(per_topic)}, "
          f"{per_topic.count(0):,} topics match nothing")
    print(f"subscribers matched:  {len(digests):,}, {matched_papers:,} ranked matches "
          f"({matched_papers / max(len(digests), 1):.1f} papers per digest)")
    print(f"index build:          {built - started:.2f} s CPU")
    print(f"match + rank:         {finished - built:.2f} s CPU")
    print(f"seconds:              {finished - started:.2f} s CPU on one core, {wall_finished - wall_started:.2f} s wall "
          f"(target < 5 s)")
    print(f"peak memory (RSS):    {peak:.0f} MB for the whole process, {rss_before:.0f} MB before matching "
          f"(target < 1024 MB)")


if __name__ == "__main__":
    main()
