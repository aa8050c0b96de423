"""Complete digest messages per second on one core: subject, text, inlined HTML, MIME bytes.

    python bench/bench_render.py [--messages 20000] [--subscribers 500]

The bundled sample (98 papers) is one edition; subscribers get 1-3 topics from a pool, ranked by
the real matcher (not timed: matching has its own benchmark), cut to ten papers each. Timed per
message: EditionRenderer.render_digest, build_message, to_bytes. The per-edition set-up (templates,
premailer, paper cards) is timed once and reported apart.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digest.config import load_settings  # noqa: E402
from digest.matching import EditionIndex, match_subscribers  # noqa: E402
from digest import message as message_module  # noqa: E402
from digest.message import build_message, make_message_id, to_bytes  # noqa: E402
from digest.models import Paper  # noqa: E402
from digest.render import DigestLinks, EditionRenderer  # noqa: E402
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
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--cards", type=int, default=10)
    parser.add_argument(
        "--cold", action="store_true",
        help="forget shared cards and encoded text lines before every message (no two subscribers alike)",
    )
    args = parser.parse_args()

    settings = load_settings(base_url="https://digest.example.org", sender="Daily Papers <digest@example.org>",
                             postal_address="Daily Papers Digest, 1 Example Street, 10115 Berlin")
    rng = random.Random(7)
    topics = {i: rng.sample(TOPIC_POOL, rng.randint(1, 3)) for i in range(1, args.subscribers + 1)}
    edition_papers = papers()
    ranked = match_subscribers(EditionIndex.build(edition_papers), topics)
    jobs = [(i, topics[i], ranked[i]) for i in topics if len(ranked.get(i, ())) >= args.cards]

    started = time.perf_counter()
    renderer = EditionRenderer(settings, EDITION)
    renderer.prepare(edition_papers)
    setup = time.perf_counter() - started

    render_ns = build_ns = bytes_ns = 0
    sizes, html_sizes = [], []
    clock = time.perf_counter_ns
    for n in range(args.messages):
        sid, subscriber_topics, matches = jobs[n % len(jobs)]
        email = f"reader{sid}@example.org"
        token = f"{sid:08d}.Zm9vYmFyYmF6cXV4.c2lnbmF0dXJl"
        links = DigestLinks(
            settings_url=f"https://digest.example.org/settings/{token}",
            unsubscribe_url=f"https://digest.example.org/unsubscribe/{token}",
            view_url=f"https://digest.example.org/digest/{EDITION}/{token}",
            more_url=f"https://digest.example.org/digest/{EDITION}/{token}",
        )
        if args.cold:
            renderer._cards_cache.clear()
            renderer._text_excerpts.clear()
            message_module._qp_lines.clear()
        t0 = clock()
        rendered = renderer.render_digest(email, subscriber_topics, matches[: args.cards], len(matches), links)
        t1 = clock()
        message = build_message(rendered, email, settings, message_id=make_message_id(sid, EDITION, settings),
                                unsubscribe_url=links.unsubscribe_url)
        t2 = clock()
        data = to_bytes(message, settings)
        t3 = clock()
        render_ns += t1 - t0
        build_ns += t2 - t1
        bytes_ns += t3 - t2
        if n < len(jobs):
            sizes.append(len(data))
            html_sizes.append(len(rendered.html.encode()))

    total_ns = render_ns + build_ns + bytes_ns
    per = args.messages
    print(f"edition set-up (templates, premailer, {len(edition_papers)} cards): {setup * 1000:.1f} ms, once")
    print(f"subscribers: {len(jobs)} distinct, {args.cards} papers each; messages: {per}"
          + ("; cold: nothing shared between messages" if args.cold else "; cards shared across subscribers"))
    print(f"inlined HTML: median {statistics.median(html_sizes) / 1024:.1f} KB, max {max(html_sizes) / 1024:.1f} KB;"
          f" message bytes: median {statistics.median(sizes) / 1024:.1f} KB")
    print(f"render_digest (subject, text, HTML): {render_ns / per / 1000:7.1f} us/message")
    print(f"build_message (headers, MIME parts): {build_ns / per / 1000:7.1f} us/message")
    print(f"to_bytes (CRLF wire bytes):          {bytes_ns / per / 1000:7.1f} us/message")
    print(f"total:                               {total_ns / per / 1000:7.1f} us/message")
    print(f"messages per second per core: {per / (total_ns / 1e9):,.0f}")


if __name__ == "__main__":
    main()
