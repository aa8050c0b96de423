"""Hand-written expected sets over the reference corpus (the bundled sample of the Daily Papers
page). Each set was checked against the raw text with an independent regular expression; the
comments say what the query must and must not find."""

from __future__ import annotations

import pytest

from digest.matching import EditionIndex, rank
from tests.matching.helpers import sample_papers

PAPERS = sample_papers()
ALL_IDS = {paper.id for paper in PAPERS}

# The 21 papers of the sample that never spell pre-training in any of its forms (pre-training,
# Pre-Training, pretraining, Pretraining, pre training; "Pre-train" alone is another word).
WITHOUT_PRETRAINING = {
    "2012.29769", "2107.41705", "2209.28650", "2305.36110", "2305.36483", "2310.12238", "2311.45062",
    "2312.34991", "2401.12984", "2404.45808", "2409.33126", "2412.35364", "2502.29396", "2503.25293",
    "2503.32007", "2503.35737", "2504.39094", "2508.12611", "2508.31634", "2510.13357", "2510.43197",
}  # fmt: skip

EXPECTED = {
    # Every spelling of pre-training, and nothing else.
    "pretraining": ALL_IDS - WITHOUT_PRETRAINING,
    "Pre-Training": ALL_IDS - WITHOUT_PRETRAINING,
    '"pre training"': ALL_IDS - WITHOUT_PRETRAINING,
    # Bare words: each must occur (or the two glued): also papers with "pre" and "training" apart.
    "pre training": ALL_IDS - {
        "2012.29769", "2107.41705", "2209.28650", "2311.45062", "2404.45808",
        "2409.33126", "2502.29396", "2504.39094", "2508.31634", "2510.43197",
    },
    # "Pre-train, Prompt, and Predict" (2107.41705) and "When to Pre-Train" (2303.29023) say
    # pre-train in the title, not pre-training.
    "title:pretraining": {
        "2011.27158", "2110.27904", "2205.24174", "2209.34618", "2210.16714", "2211.11119", "2302.13730",
        "2303.32753", "2303.44689", "2304.23428", "2305.17087", "2305.27531", "2305.43570", "2306.33872",
        "2306.40586", "2308.38721", "2308.39840", "2308.44316", "2310.15222", "2310.24920", "2310.41332",
        "2310.43943", "2310.46181", "2312.15595", "2401.31261", "2403.21936", "2405.11492", "2406.10746",
        "2406.16341", "2406.32380", "2406.37229", "2407.28277", "2409.17833", "2409.38348", "2410.18206",
        "2410.23801", "2410.33499", "2504.23055", "2505.17460", "2505.42451", "2506.22682", "2506.24547",
        "2506.37602", "2507.36856", "2509.22309", "2509.42824", "2510.15968",
    },
    # In-Context, in-context and "in context" are one phrase.
    '"in-context learning"': {
        "2205.30515", "2306.33872", "2306.40586", "2307.14476", "2310.43943", "2410.18206", "2503.25293",
        "2506.40959",
    },
    # Multi-modal, multi-modal, Multimodal, multimodal.
    "multimodal": {
        "1909.10373", "2304.23428", "2401.12984", "2404.26039", "2406.16341", "2407.26785", "2503.10000",
        "2506.22682",
    },
    # Whole words, upper case in the papers: RoBERTa alone does not count.
    "BERT": {"2110.45435", "2302.40213", "2305.43570", "2308.44316", "2507.39467"},
    # robot, robots, robotic, robotics.
    "robot*": {"2302.40213", "2310.41332", "2312.15595", "2506.22682", "2506.24547"},
    "diffusion -video": {
        "2305.36483", "2308.14103", "2310.18579", "2401.12984", "2403.21936", "2404.45808", "2503.32007",
        "2504.39094", "2508.31634", "2510.13357",
    },
    "(speech OR audio) generation": {
        "2304.23428", "2310.18579", "2401.12984", "2404.45808", "2508.12611", "2508.31634",
    },
    'author:"Ana Ruiz"': {
        "2110.27904", "2210.16714", "2304.23428", "2305.25666", "2305.43570", "2307.14476", "2310.41332",
        "2404.45808", "2406.32380", "2409.18952", "2503.10000", "2507.36856",
    },
    "category:cs.CV diffusion": {
        "2305.36483", "2306.26412", "2308.14103", "2310.12238", "2310.18579", "2401.12984", "2403.21936",
        "2404.45808", "2405.11492", "2407.26785", "2503.32007", "2504.39094", "2508.12611", "2508.31634",
        "2510.13357",
    },
    # Only one paper says text-to-image, hyphenated; the phrase finds it.
    '"text to image"': {"2508.31634"},
    # fine-tuning, Fine-Tuning, finetuning.
    "fine-tuning": {
        "2011.27158", "2202.34245", "2203.20817", "2205.30515", "2209.34618", "2302.13730", "2302.40213",
        "2303.29023", "2303.44689", "2305.25666", "2305.27531", "2307.30888", "2308.44316", "2310.15222",
        "2310.41332", "2311.45062", "2404.26039", "2406.37229", "2408.42078", "2410.23801", "2410.33499",
        "2503.32007", "2505.42451", "2507.20071", "2510.13357", "2510.43197",
    },
    # state-of-the-art, State-Of-the-Art, state of the art, and "states of the art" (2308.44316).
    '"state of the art"': {
        "1909.10373", "2110.27904", "2210.16714", "2210.30142", "2302.40213", "2304.23428", "2305.17087",
        "2305.27531", "2305.43570", "2306.26412", "2308.38721", "2308.44316", "2310.18579", "2311.45062",
        "2312.15595", "2406.21563", "2407.26785", "2408.19325", "2409.17833", "2410.23801", "2503.32007",
        "2505.42451", "2508.12611",
    },
    # naive and naïve.
    "naïve": {"2012.29769", "2505.17460"},
    # LLM and LLMs; "large language model(s)" in any case and hyphenation.
    'LLM OR "large language model"': {
        "2110.45435", "2303.44689", "2307.30888", "2308.39840", "2310.43943", "2310.46181", "2311.45062",
        "2406.21563", "2406.32380", "2406.37229", "2407.28277", "2409.17833", "2409.18952", "2409.38348",
        "2410.18206", "2410.33499", "2410.37975", "2502.29396", "2503.10000", "2504.23055", "2505.17460",
        "2505.42451", "2507.20071", "2507.36856", "2507.39467", "2509.22309", "2510.15968", "2510.43197",
    },
    # train, trains, pre-train (the part "train"); not constraint, training or trained.
    "train": {
        "2107.41705", "2110.45435", "2209.34618", "2303.29023", "2303.44689", "2305.43570", "2306.26412",
        "2307.30888", "2308.14103", "2308.38721", "2308.39840", "2310.15222", "2310.41332", "2310.43943",
        "2310.46181", "2312.34991", "2405.11492", "2406.10746", "2406.16341", "2407.26785", "2407.28277",
        "2408.42078", "2506.22682", "2509.22309",
    },
    "zero-shot -title:benchmark*": {
        "2107.41705", "2205.30515", "2306.26412", "2312.15595", "2402.19698", "2406.21563",
    },
    "self-supervised OR abstract:multilingual": {
        "2110.27904", "2202.34245", "2205.24174", "2210.16714", "2308.44316", "2310.15222", "2312.34991",
        "2410.37975", "2504.23055",
    },
    # Papers that say pretrained or pre-trained but never pre-training.
    '-"pre-training" pretrained': {
        "2012.29769", "2107.41705", "2305.36110", "2305.36483", "2310.12238", "2312.34991", "2401.12984",
        "2412.35364", "2503.32007", "2503.35737", "2504.39094", "2508.12611", "2510.13357",
    },
    'abstract:"masked language model*"': {"1909.10373"},
    "title:(LLM OR LLMs) -abstract:survey": {"2410.33499", "2410.37975", "2504.23055"},
}  # fmt: skip


@pytest.fixture(scope="module")
def index() -> EditionIndex:
    return EditionIndex.build(PAPERS)


@pytest.mark.parametrize("query", list(EXPECTED))
def test_query_finds_exactly_the_expected_papers(index, query):
    found = {match.paper.id for match in rank(index, [query])}
    assert found == EXPECTED[query]


def test_every_spelling_of_pretraining_is_reported_as_written(index):
    words = {word for match in rank(index, ["pretraining"]) for word in match.matched}
    assert {"pre-training", "Pre-training", "Pre-Training", "pretraining", "Pretraining"} <= words
    # Other words are not highlighted: pre-trained and Pre-Train are not pretraining.
    assert not {word for word in words if "train" in word.lower() and not word.lower().endswith("training")}


def test_prefix_reports_the_inflections_it_matched(index):
    words = {word for match in rank(index, ["pretrain*"]) for word in match.matched}
    assert {"pretrained", "pre-trained", "Pre-Trained", "pretraining", "Pre-Training", "pre-train"} <= words
