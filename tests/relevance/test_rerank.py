"""The per-reader model on papers it is given: what a reader who marked papers would see."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.matching import EditionIndex, rank
from digest.relevance import EditionFeatures, FeatureCache, fit, reason, rerank, trending
from digest.relevance.model import paper_key
from digest.relevance.rerank import LEFT_OUT_RATIO
from tests.matching.helpers import paper

QUANT = [
    ("Low-bit weight quantization for large language model inference",
     "We quantize weights and activations to 2 bits with rotation and calibration, cutting inference memory "
     "and latency of the language model while keeping perplexity."),
    ("KV cache quantization and eviction for long-context decoding",
     "Compressing the KV cache by quantization and token eviction reduces decoding memory and latency for "
     "long-context inference of language models."),
    ("Post-training quantization of activations with outlier rotation",
     "Outliers in activations make low-bit post-training quantization hard; a rotation removes them so "
     "4-bit weights and activations keep inference accuracy."),
    ("Sparse attention kernels for faster long-context prefill",
     "Block-sparse attention skips most of the attention computation in long-context prefill, making "
     "inference of language models faster with little loss, and combines with KV cache quantization."),
    ("Speculative decoding with a quantized draft model",
     "A low-bit quantized draft model proposes tokens that the full model verifies, so decoding latency of "
     "language model inference drops with identical outputs."),
]
AGENTS = [
    ("A web agent that books travel with tool calls",
     "Our agent plans tool calls in a browser to book flights and hotels, with a benchmark of web tasks "
     "and reinforcement learning from task rewards."),
    ("Multi-agent debate improves tool-using assistants",
     "Several agents debate before calling tools; the assistant completes more web and coding tasks on our "
     "agent benchmark."),
    ("Agents that learn to use a spreadsheet",
     "A spreadsheet agent learns tool calls from demonstrations and reinforcement learning, solving office "
     "tasks in a benchmark of agent workflows."),
]
OTHER = [
    ("Protein structure prediction with equivariant networks",
     "Equivariant graph networks predict protein folds from sequences, improving structure accuracy on "
     "benchmarks of protein design."),
    ("Text-to-video generation with temporal consistency",
     "A video diffusion model generates consistent clips from text prompts, evaluated on video benchmarks."),
]


def papers_of(texts, prefix: str, start: int = 1):
    return [paper(id=f"{prefix}.{start + i:05d}", title=t, abstract=a, upvotes=i) for i, (t, a) in enumerate(texts)]


def model_of(liked, disliked=()):
    cache = FeatureCache()
    everything = list(liked) + list(disliked)
    cache.add(everything, [paper_key(p) for p in everything])
    return fit(list(liked), list(disliked), cache.matrix)


def test_papers_like_the_liked_ones_rise_and_say_which_paper_they_resemble():
    liked = papers_of(QUANT[:1], "2601")
    edition = papers_of(AGENTS[:2] + QUANT[1:3] + OTHER, "2611")
    # A topic every paper of the day matches in its title (equal scores): the model decides.
    topic = "web OR debate OR KV OR post-training OR protein OR video"
    matches = rank(EditionIndex.build(edition), [topic])
    shown = rerank(matches, len(matches), EditionFeatures.build(edition), model_of(liked),
                   learn=True, suggest=True, limit=10)
    ids = [m.paper.id for m in shown]
    assert set(ids[:2]) == {"2611.00003", "2611.00004"}  # the quantization papers first
    assert [m.resembles for m in shown[:2]] == [QUANT[0][0]] * 2
    assert reason(shown[0]).endswith(f"Like: {QUANT[0][0]}")
    assert all(m.topics for m in shown)  # reordered, nothing added: every paper matched already


def test_papers_like_a_less_like_this_fall():
    edition = papers_of(AGENTS[1:2] + OTHER[:1] + QUANT[1:2], "2611")
    edition[0].upvotes = 10  # equal topic scores (each in a title), the agent paper first by upvotes
    matches = rank(EditionIndex.build(edition), ["debate OR protein OR KV"])
    assert matches[0].paper.id == "2611.00001"
    disliked = papers_of(AGENTS[:1] + AGENTS[2:], "2601")
    # The reader also liked a paper about assistants: the agent paper resembles both kinds.
    liked = papers_of([("Assistants that debate less and answer faster",
                        "A quantized draft model proposes answers for assistants, cutting the latency of language "
                        "model inference.")], "2602")
    features, model = EditionFeatures.build(edition), model_of(liked, disliked)
    _, like, _, dislike = model.scores(features)
    assert like[0] < dislike[0] <= LEFT_OUT_RATIO * like[0]  # nearer the dislikes, not much nearer
    shown = rerank(matches, len(matches), features, model, learn=True, suggest=True, limit=10)
    assert shown[-1].paper.id == "2611.00001"
    assert {m.paper.id for m in shown} == {m.paper.id for m in matches}


def test_papers_much_nearer_a_less_like_this_than_any_liked_one_are_left_out():
    edition = papers_of(AGENTS[1:2] + OTHER[:1] + QUANT[1:2], "2611")
    matches = rank(EditionIndex.build(edition), ["agents OR protein OR inference"])
    disliked = papers_of(AGENTS[:1] + AGENTS[2:], "2601")  # two agent papers, nothing liked
    shown = rerank(matches, len(matches), EditionFeatures.build(edition), model_of([], disliked),
                   learn=True, suggest=True, limit=10)
    # Pushed down is not enough when the digest has room for every match: it is left out.
    assert [m.paper.id for m in shown] == [m.paper.id for m in matches if m.paper.id != "2611.00001"]
    assert all(m.resembles is None for m in shown)  # nothing rose because of a liked paper
    # Papers that merely share a few common words with a dislike stay (protein, KV cache).
    assert len(shown) == 2
    # The digest's "N new papers" and "and N more" count what the reader can get, not what was left out.
    assert shown.total == 2


def test_a_left_out_match_is_not_counted_even_when_the_digest_has_no_room_for_it():
    edition = papers_of(AGENTS[1:2] + OTHER + QUANT[1:2], "2611")
    matches = rank(EditionIndex.build(edition), ["agents OR protein OR video OR inference"])
    disliked = papers_of(AGENTS[:1] + AGENTS[2:], "2601")
    shown = rerank(matches, len(matches), EditionFeatures.build(edition), model_of([], disliked),
                   learn=True, suggest=True, limit=1)
    assert len(shown) == 1 and shown[0].paper.id != "2611.00001"
    assert shown.total == len(matches) - 1


def test_suggestions_beyond_topics_only_when_confident_and_labelled():
    liked = papers_of(QUANT[:3], "2601")
    edition = papers_of(QUANT[3:] + AGENTS + OTHER, "2611")
    index = EditionIndex.build(edition)
    matches = rank(index, ["protein"])
    features = EditionFeatures.build(edition)
    shown = rerank(matches, len(matches), features, model_of(liked), learn=True, suggest=True, limit=10)
    suggested = [m for m in shown if not m.topics]
    assert {m.paper.id for m in suggested} == {"2611.00001", "2611.00002"}  # sparse attention, speculative
    assert all(m.resembles in {t for t, _ in QUANT[:3]} for m in suggested)
    assert all(reason(m).startswith("Like: ") for m in suggested)
    assert shown.total == len(matches) + 2
    # Off: no suggestion. Too few liked papers to know what "close" means for this reader: none.
    off = rerank(matches, len(matches), features, model_of(liked), learn=True, suggest=False, limit=10)
    assert all(m.topics for m in off)
    unsure = rerank(matches, len(matches), features, model_of(liked[:2]), learn=True, suggest=True, limit=10)
    assert all(m.topics for m in unsure)


def test_suggestions_keep_a_place_in_a_full_digest_and_never_repeat_a_marked_paper():
    liked = papers_of(QUANT[:3], "2601")
    edition = papers_of(QUANT[3:] + AGENTS + OTHER, "2611") + liked  # liked papers are in this edition too
    matches = rank(EditionIndex.build(edition), ["benchmark OR agent"])
    shown = rerank(matches, len(matches), EditionFeatures.build(edition), model_of(liked),
                   learn=True, suggest=True, limit=3)
    assert len(shown) == 3
    assert {m.paper.id for m in shown if not m.topics} == {"2611.00001", "2611.00002"}
    assert not {m.paper.id for m in shown} & {p.id for p in liked}


def test_learning_off_is_todays_order():
    liked = papers_of(QUANT[:3], "2601")
    edition = papers_of(AGENTS + QUANT[3:], "2611")
    matches = rank(EditionIndex.build(edition), ["benchmark OR inference"])
    shown = rerank(matches, len(matches), EditionFeatures.build(edition), model_of(liked),
                   learn=False, suggest=True, limit=10)
    assert list(shown) == matches


def test_trending_is_by_upvotes_then_id_and_counts_every_paper():
    day = [paper(id="2611.00003", upvotes=5), paper(id="2611.00001", upvotes=9), paper(id="2611.00002", upvotes=5)]
    top = trending(day, 2)
    assert [m.paper.id for m in top] == ["2611.00001", "2611.00002"]
    assert top.total == 3
    assert [reason(m) for m in top] == ["9 upvotes", "5 upvotes"]
    assert all(m.topics == () and m.resembles is None for m in top)


WORDS = ["quantization", "agents", "protein", "video", "attention", "benchmark", "robot", "diffusion"]
text = st.lists(st.sampled_from(WORDS), min_size=1, max_size=8).map(" ".join)


@given(titles=st.lists(text, min_size=1, max_size=12), abstracts=st.data(),
       topics=st.lists(st.sampled_from(WORDS + ["quantization OR robot", "-video diffusion"]), min_size=1, max_size=3),
       upvotes=st.data(), limit=st.integers(min_value=1, max_value=12))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_no_marks_is_exactly_todays_ranking(titles, abstracts, topics, upvotes, limit):
    """A reader with no marks (no model), or with learning off, gets the ranking topic matching
    gives, cut the same way; a reader without topics gets trending, untouched."""
    edition = [paper(id=f"2611.{i:05d}", title=t, abstract=abstracts.draw(text),
                     upvotes=upvotes.draw(st.integers(0, 5))) for i, t in enumerate(titles)]
    features = EditionFeatures.build(edition)
    matches = rank(EditionIndex.build(edition), topics)
    assert fit([], [], FeatureCache().matrix) is None
    # Learning off: the reader's marks change nothing, whatever they are.
    marks = model_of(edition[:2], edition[2:3])
    for suggest in (True, False):
        shown = rerank(matches, len(matches), features, marks, learn=False, suggest=suggest, limit=limit)
        assert list(shown) == matches[:limit] and shown.total == len(matches)
    for learn in (True, False):
        for suggest in (True, False):
            shown = rerank(matches, len(matches), features, None, learn=learn, suggest=suggest, limit=limit)
            assert list(shown) == matches[:limit] and shown.total == len(matches)
            hot = trending(edition, limit)
            assert list(rerank(hot, hot.total, features, None, learn=learn, suggest=suggest, limit=limit)) == list(hot)
