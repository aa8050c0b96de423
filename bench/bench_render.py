"""Complete digest messages per second on one core: subject, text, inlined HTML, MIME bytes.

    python bench/bench_render.py [--messages 20000] [--cold] [--no-feedback]

The bundled sample (98 papers) is one edition; every message goes to a different subscriber with
1-3 topics drawn from a pool of 16, ranked by the real matcher (not timed: matching has its own
benchmark), cut to ten papers each. Subscribers whose matched topics for a paper coincide share
that card (as on a real morning); --cold forgets every shared card and encoded line before each
message, the worst case where no two subscribers have anything in common. Timed per
message: EditionRenderer.render_digest and message_bytes (as delivery builds it), including each card's two
feedback links ("More like this", "Less like this"), signed per reader, paper and action by the real
`feedback_url` (as delivery makes them; --no-feedback leaves them out, to see what they cost). The per-edition
set-up (templates, premailer, paper cards) is timed once and reported apart.

"Per core" is measured in CPU time of this thread (time.thread_time_ns), so that other processes
sharing the machine do not count against us; the wall-clock rate is printed beside it. The run is
split into rounds; the best round and the median round are both reported.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from types import SimpleNamespace
from datetime import date, datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digest.config import load_settings  # noqa: E402
from digest.matching import EditionIndex, match_subscribers  # noqa: E402
from digest.mail import transfer_encoding  # noqa: E402
from digest.mail import feedback_links, make_message_id, message_bytes  # noqa: E402
from digest.models import Paper  # noqa: E402
from digest.mail import DigestLinks, EditionRenderer  # noqa: E402
from tests.factories import sample_records  # noqa: E402

EDITION = date(2026, 11, 26)
TOPIC_POOL = [
    "pretraining", "diffusion", "reinforcement learning", "video generation", "language models",
    "retrieval", "robotics", "multimodal", "reasoning", "agents", "benchmark", "speech",
    "image editing", "code generation", "mixture of experts", "alignment",
]


def papers() -> list[Paper]:
    result = []
    for record in sample_records():
        result.append(
            Paper(
                id=record["id"], title=record["title"], abstract=record.get("abstract", ""),
                authors=record.get("authors", []), categories=[], upvotes=record.get("upvotes", 0),
                github_repo=record.get("github_repo"), project_page=record.get("project_page"),
                keywords=[], sources=["hf"], edition=EDITION,
                published_at=datetime(2026, 11, 25, tzinfo=timezone.utc),
            )
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--cards", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--cold", action="store_true",
        help="forget shared cards and encoded text lines before every message (no two subscribers alike)",
    )
    parser.add_argument("--no-feedback", action="store_true", help="cards without their two feedback links")
    args = parser.parse_args()

    settings = load_settings(base_url="https://digest.example.org", sender="Daily Papers <digest@example.org>",
                             postal_address="Daily Papers Digest, 1 Example Street, 10115 Berlin",
                             secret_key="bench-render-secret-key-0123456789abcdef")
    rng = random.Random(7)
    topics = {i: rng.sample(TOPIC_POOL, rng.randint(1, 3)) for i in range(1, int(args.messages * 1.6) + 1)}
    edition_papers = papers()
    ranked = match_subscribers(EditionIndex.build(edition_papers), topics)
    jobs = [(i, topics[i], ranked[i]) for i in topics if len(ranked.get(i, ())) >= args.cards][: args.messages]
    if len(jobs) < args.messages:
        raise SystemExit(f"only {len(jobs)} subscribers with {args.cards} matches; ask for fewer messages")

    readers = {sid: SimpleNamespace(id=sid, link_secret=f"secret-{sid:08d}-bench-render") for sid, _, _ in jobs}

    started = time.perf_counter()
    renderer = EditionRenderer(settings, EDITION)
    renderer.prepare(edition_papers)
    setup = time.perf_counter() - started

    sizes, html_sizes = [], []
    clock = time.thread_time_ns
    rounds = []
    per_round = max(1, args.messages // args.rounds)
    n = 0
    for _ in range(args.rounds):
        render_ns = build_ns = 0
        wall = time.perf_counter()
        for _ in range(per_round):
            sid, subscriber_topics, matches = jobs[n % len(jobs)]
            n += 1
            email = f"reader{sid}@example.org"
            token = f"{sid:08d}.Zm9vYmFyYmF6cXV4.c2lnbmF0dXJl"
            links = DigestLinks(
                settings_url=f"https://digest.example.org/settings/{token}",
                unsubscribe_url=f"https://digest.example.org/unsubscribe/{token}",
                view_url=f"https://digest.example.org/digest/{EDITION}/{token}",
                more_url=f"https://digest.example.org/digest/{EDITION}/{token}",
                feedback=None if args.no_feedback else feedback_links(readers[sid], settings),
            )
            if args.cold:
                renderer._cards_cache.clear()
                renderer._text_excerpts.clear()
                renderer._encoded_rests.clear()
                transfer_encoding._encoded_lines.clear()
            t0 = clock()
            rendered = renderer.render_digest(email, subscriber_topics, matches[: args.cards], len(matches), links)
            t1 = clock()
            data = message_bytes(rendered, email, settings, message_id=make_message_id(sid, EDITION, settings),
                                 unsubscribe_url=links.unsubscribe_url)
            t2 = clock()
            render_ns += t1 - t0
            build_ns += t2 - t1
            if len(sizes) < len(jobs):
                sizes.append(len(data))
                html_sizes.append(len(rendered.html.encode()))
        rounds.append((render_ns + build_ns, render_ns, build_ns, time.perf_counter() - wall))

    rounds.sort()
    best, median = rounds[0], rounds[len(rounds) // 2]
    print(f"edition set-up (templates, premailer, {len(edition_papers)} cards): {setup * 1000:.1f} ms, once")
    print(f"{len(jobs)} messages to {len(jobs)} different subscribers, {args.cards} papers each;"
          f" {args.rounds} rounds of {per_round}"
          + ("; cold: nothing shared between messages" if args.cold else "; cards shared across subscribers")
          + ("; no feedback links" if args.no_feedback else "; 2 signed feedback links per card"))
    print(f"inlined HTML: median {statistics.median(html_sizes) / 1024:.1f} KB, max {max(html_sizes) / 1024:.1f} KB;"
          f" message bytes: median {statistics.median(sizes) / 1024:.1f} KB")
    for label, (total_ns, render_ns, build_ns, wall) in (("best round", best), ("median round", median)):
        print(f"{label}: render_digest {render_ns / per_round / 1000:.1f} us + message_bytes {build_ns / per_round / 1000:.1f} us"
              f" = {total_ns / per_round / 1000:.1f} us CPU per message")
        print(f"{label}: {per_round / (total_ns / 1e9):,.0f} messages per second per core (CPU time);"
              f" {per_round / wall:,.0f} per second wall clock")


if __name__ == "__main__":
    main()
