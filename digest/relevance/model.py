"""A reader's model: the papers they liked ("More like this", "Papers you like") and did not
("Less like this"), compared with each candidate by cosine similarity of their text features.

The model is the nearest-neighbour kernel of Rocchio's relevance feedback: a candidate's score is
its similarity to the most similar liked paper minus its similarity to the most similar disliked
one. Fitting is keeping the marked papers' ids (their vectors are cached per process) and
computing the reader's own confidence threshold; scoring is a max over rows of similarities that
every reader of the edition shares (docs/relevance.md has the measurements behind the choice).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from digest.relevance.features import EditionFeatures

# A suggestion beyond the reader's topics needs a candidate at least as close to a liked paper
# as the reader's liked papers typically are to each other (leave-one-out: each liked paper's
# nearest other liked paper): the lower quartile of those, and never below a floor (two unrelated
# abstracts share enough words for a few hundredths).
THRESHOLD_QUANTILE = 0.25
THRESHOLD_FLOOR = 0.05
MIN_LIKED_FOR_SUGGESTIONS = 3  # below this there is no distribution to be confident from


# A "Less like this" counts twice a "More like this": a reader marks what a topic wrongly
# caught, so the nearest dislike is the sharper evidence (measured: docs/relevance.md).
DISLIKE_WEIGHT = 2.0


def _pool(rows: np.ndarray, nearest: np.ndarray) -> np.ndarray:
    return rows[nearest, np.arange(rows.shape[1])]


@dataclass
class ReaderModel:
    liked: tuple[str, ...]  # paper ids
    liked_titles: tuple[str, ...]
    disliked: tuple[str, ...]
    # The papers' term-frequency rows by key (a FeatureCache's `matrix`): a model keeps only its
    # keys, not copies of the rows (a hundred thousand readers' copies came to gigabytes).
    vectors: Callable[[Sequence], sp.csr_matrix]
    # The keys under which the papers' similarities are cached (FeatureCache keys): the paper id
    # and its version, so that a paper whose text changed is compared again.
    liked_keys: tuple = ()
    disliked_keys: tuple = ()
    disliked_titles: tuple[str, ...] = ()
    _thresholds: dict = field(default_factory=dict)  # per edition features (by identity)

    @property
    def liked_tf(self) -> sp.csr_matrix:
        return self.vectors(self.liked_keys)

    @property
    def disliked_tf(self) -> sp.csr_matrix:
        return self.vectors(self.disliked_keys)

    def scores(self, features: EditionFeatures) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per candidate: the model's score (like - DISLIKE_WEIGHT x dislike), the similarity to the
        nearest liked paper, which liked paper that is (an index into `liked`, -1 when none), and
        the similarity to the nearest disliked paper."""
        n = len(features.papers)
        like = np.zeros(n, dtype=np.float32)
        nearest = np.full(n, -1, dtype=np.int64)
        dislike = np.zeros(n, dtype=np.float32)
        # The rows only if a paper was not compared with the edition yet (prepare() did the batch's).
        if self.liked:
            rows = features.similarities(self.liked_keys, lambda: self.liked_tf)
            nearest = rows.argmax(axis=0)
            like = _pool(rows, nearest)
        if self.disliked:
            rows = features.similarities(self.disliked_keys, lambda: self.disliked_tf)
            dislike = _pool(rows, rows.argmax(axis=0))
        return like - DISLIKE_WEIGHT * dislike, like, nearest, dislike

    def nearest_disliked(self, features: EditionFeatures) -> np.ndarray:
        """Per candidate, which disliked paper is nearest to it (an index into `disliked_titles`)."""
        if not self.disliked:
            return np.full(len(features.papers), -1, dtype=np.int64)
        return features.similarities(self.disliked_keys, lambda: self.disliked_tf).argmax(axis=0)

    def threshold(self, features: EditionFeatures) -> float | None:
        """How similar to a liked paper a candidate must be for a suggestion, in this edition's
        weighting; None when the reader liked too few papers to tell."""
        if len(self.liked) < MIN_LIKED_FOR_SUGGESTIONS:
            return None
        key = id(features)
        kept = self._thresholds.get(key)
        if kept is None or kept[0] is not features:
            liked = features.weigh(self.liked_tf)
            # The Gram matrix on the columns the liked papers use: a transpose of a 2**20-column
            # sparse matrix would cost a pass over every column. Sparse, not dense: numpy's dense
            # product starts BLAS threads that spin on the CPUs the builders need.
            used, compact = np.unique(liked.indices, return_inverse=True)
            narrow = sp.csr_matrix((liked.data, compact, liked.indptr), shape=(liked.shape[0], len(used)))
            pairs = (narrow @ narrow.T).toarray()
            np.fill_diagonal(pairs, -1.0)
            loo = np.sort(pairs.max(axis=1))
            # np.quantile's linear interpolation, written out: np.quantile costs ~0.1 ms a call
            position = THRESHOLD_QUANTILE * (len(loo) - 1)
            low = int(position)
            quantile = float(loo[low] + (loo[min(low + 1, len(loo) - 1)] - loo[low]) * (position - low))
            value = max(quantile, THRESHOLD_FLOOR)
            self._thresholds.clear()  # one edition at a time: the cache must stay small
            kept = self._thresholds[key] = (features, value)
        return kept[1]


def paper_key(paper) -> tuple:
    """A paper's cache key: its id and when it last changed (a refetch may correct its text)."""
    return (paper.id, getattr(paper, "updated_at", None))


def fit(liked: Sequence, disliked: Sequence, vectors: Callable[[Sequence], sp.csr_matrix],
        key: Callable = paper_key) -> ReaderModel | None:
    """The model of a reader's marks (papers with .id and .title); None without any mark.
    `vectors(keys)` gives the papers' term-frequency rows by `key(paper)` (a FeatureCache's
    `matrix`, the papers added to it first); the model asks it again whenever it needs them."""
    if not liked and not disliked:
        return None
    liked_keys = tuple(key(p) for p in liked)
    disliked_keys = tuple(key(p) for p in disliked)
    return ReaderModel(tuple(p.id for p in liked), tuple(p.title for p in liked), tuple(p.id for p in disliked),
                       vectors, liked_keys, disliked_keys, tuple(p.title for p in disliked))


class ModelCache:
    """Per process: fitted models by (subscriber id, feedback_version), at most `keep`, newest
    use last. A reader is refitted only when their version changed (every change of marks bumps it)."""

    def __init__(self, keep: int = 200_000) -> None:
        self.keep = keep
        # Keyed by the subscriber id and their link secret (never reused: a store rebuilt from
        # scratch cannot hand a new reader an old reader's model), holding (version, model).
        self._models: OrderedDict[tuple, tuple[int, ReaderModel | None]] = OrderedDict()
        self.lock = threading.Lock()
        self.fits = 0

    def get(self, subscriber_id, version: int) -> tuple[bool, ReaderModel | None]:
        with self.lock:
            kept = self._models.get(subscriber_id)
            if kept is None or kept[0] != version:
                return False, None
            self._models.move_to_end(subscriber_id)
            return True, kept[1]

    def put(self, subscriber_id, version: int, model: ReaderModel | None) -> None:
        with self.lock:
            self.fits += 1
            self._models[subscriber_id] = (version, model)
            self._models.move_to_end(subscriber_id)
            while len(self._models) > self.keep:
                self._models.popitem(last=False)
