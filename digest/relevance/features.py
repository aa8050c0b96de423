"""The text features of a paper: hashed words and word pairs of its title, abstract and authors.

A HashingVectorizer needs no vocabulary, so a paper's vector never changes once computed (it can
be cached per process, whichever edition it came from), and a new edition needs no refit. The
weighting is TF-IDF-like: sublinear term frequency, an inverse document frequency taken from the
edition being ranked (the papers a reader's marks are compared with: a word every paper of the
day uses says nothing), and l2 norms, so that a dot product is a cosine similarity.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer

N_FEATURES = 2**20  # few collisions for the ~10^4 distinct words and pairs of a day's abstracts

_vectorizer = HashingVectorizer(
    n_features=N_FEATURES, alternate_sign=False, norm=None, stop_words="english",
    ngram_range=(1, 2), dtype=np.float32,
)


def paper_text(paper) -> str:
    # The title twice: it says what the paper is about more densely than the abstract does.
    # Authors as one token each (a name's words alone would match strangers who share a surname).
    authors = " ".join("author_" + "_".join(str(name).split()) for name in (paper.authors or [])[:20])
    return f"{paper.title}. {paper.title}. {paper.abstract or ''} {authors}"


def vectorize(papers: Sequence) -> sp.csr_matrix:
    """Sublinear term frequencies (1 + log tf), one row per paper, not yet weighted or normed."""
    matrix = _vectorizer.transform([paper_text(p) for p in papers]).tocsr()
    np.log(matrix.data, out=matrix.data)
    matrix.data += 1.0
    return matrix


def rows_matrix(rows: Sequence[tuple[np.ndarray, np.ndarray]]) -> sp.csr_matrix:
    """A CSR matrix of rows given as (column indices, values)."""
    if not rows:
        return sp.csr_matrix((0, N_FEATURES), dtype=np.float32)
    indptr = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum([len(indices) for indices, _ in rows], out=indptr[1:])
    indices = np.concatenate([indices for indices, _ in rows])
    data = np.concatenate([data for _, data in rows])
    return sp.csr_matrix((data, indices, indptr), shape=(len(rows), N_FEATURES))


def matrix_rows(matrix: sp.csr_matrix) -> list[tuple[np.ndarray, np.ndarray]]:
    """The rows of a CSR matrix as (column indices, values), without one scipy object per row."""
    indptr, indices, data = matrix.indptr, matrix.indices, matrix.data
    return [(indices[indptr[i]:indptr[i + 1]], data[indptr[i]:indptr[i + 1]]) for i in range(matrix.shape[0])]


class FeatureCache:
    """Per process: the vectors of the papers readers marked (they may come from any edition),
    by key (model.paper_key: id and version), at most `keep` (newest use last). Thread-safe."""

    def __init__(self, keep: int = 50_000) -> None:
        self.keep = keep
        # Each row as its (indices, data) arrays: a reader's rows are then one CSR matrix in two
        # concatenations (scipy's vstack of one-row matrices costs ~10 us a row).
        self._rows: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.lock = threading.Lock()
        self.computed = 0  # papers vectorized so far (the benchmark shows the cache works)

    def add(self, papers: Sequence, keys: Sequence) -> None:
        """Vectorize the papers whose key is not cached yet."""
        with self.lock:
            todo = [(p, k) for p, k in zip(papers, keys) if k not in self._rows]
        if not todo:
            return
        matrix = vectorize([p for p, _ in todo])
        with self.lock:
            self.computed += len(todo)
            for i, (_, key) in enumerate(todo):
                start, end = matrix.indptr[i], matrix.indptr[i + 1]
                self._rows[key] = (matrix.indices[start:end].copy(), matrix.data[start:end].copy())
            while len(self._rows) > self.keep:
                self._rows.popitem(last=False)

    def matrix(self, keys: Sequence) -> sp.csr_matrix:
        """The rows of these papers, in order (each must have been added)."""
        with self.lock:
            rows = [self._rows[key] for key in keys]
            for key in keys:
                self._rows.move_to_end(key)
        return rows_matrix(rows)

    def __contains__(self, key) -> bool:
        return key in self._rows


class EditionFeatures:
    """The candidate papers of one edition as features, built once per edition: the weighted,
    normed matrix and, per marked paper, its similarities to every candidate (cached: a paper
    many readers liked is compared with the edition once)."""

    def __init__(self, papers: Sequence, matrix: sp.csr_matrix, idf: np.ndarray) -> None:
        self.papers = list(papers)
        self.position = {paper.id: i for i, paper in enumerate(self.papers)}
        # By object: a reader's matches hold the edition's own Paper objects, and reading an ORM
        # object's id costs more than its identity (rerank looks up every match).
        self.object_position = {id(paper): i for i, paper in enumerate(self.papers)}
        self.matrix = matrix  # rows: candidates, idf-weighted and l2-normed
        self._columns = matrix.T.tocsr()  # once, not per product (a CSC-to-CSR copy each time)
        self.idf = idf
        self._similarities: dict[str, np.ndarray] = {}
        self.lock = threading.Lock()

    @classmethod
    def build(cls, papers: Sequence, tf: sp.csr_matrix | None = None) -> EditionFeatures:
        tf = vectorize(papers) if tf is None else tf
        n = max(tf.shape[0], 1)
        df = np.bincount(tf.indices, minlength=N_FEATURES).astype(np.float32)
        # Smoothed idf; a word the edition never uses gets the largest weight (it is rare).
        idf = (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)
        return cls(papers, cls._weigh(tf, idf), idf)

    @staticmethod
    def _weigh(tf: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
        weighted = tf.copy()
        weighted.data *= idf[weighted.indices]
        # l2 norms by hand: sklearn's normalize validates its input at a cost of ~0.3 ms a call,
        # as much as the work itself for a reader's fifteen rows.
        rows = np.repeat(np.arange(weighted.shape[0]), np.diff(weighted.indptr))
        norms = np.sqrt(np.bincount(rows, weights=weighted.data.astype(np.float64) ** 2, minlength=weighted.shape[0]))
        norms[norms == 0] = 1.0
        weighted.data /= norms[rows].astype(np.float32)
        return weighted

    def weigh(self, tf: sp.csr_matrix) -> sp.csr_matrix:
        """Marked papers' vectors in this edition's weighting, so that dot products are cosines."""
        return self._weigh(tf, self.idf)

    def prepare(self, models: Sequence) -> None:
        """Compare, in one product, the marked papers of these readers' models (ReaderModel) not
        yet compared with this edition: a batch of readers at once rather than one by one."""
        with self.lock:
            seen = set(self._similarities)
        keys, rows = [], []
        for model in models:
            # The rows are read only for a model with a paper not compared yet: most readers' marks
            # were all compared for an earlier reader, and assembling their rows is the cost.
            for model_keys, rows_of in ((model.liked_keys, _liked_tf), (model.disliked_keys, _disliked_tf)):
                if all(key in seen for key in model_keys):
                    continue
                for key, row in zip(model_keys, matrix_rows(rows_of(model))):
                    if key not in seen:
                        seen.add(key)
                        keys.append(key)
                        rows.append(row)
        if keys:
            self.similarities(keys, rows_matrix(rows))

    def similarities(self, paper_ids: Sequence, tf: sp.csr_matrix | Callable[[], sp.csr_matrix]) -> np.ndarray:
        """Cosine similarity of each given paper (rows of `tf`, under their keys `paper_ids`) to
        every candidate: an array (len(paper_ids), len(papers)). Papers already compared with
        this edition are not compared again. `tf` may be a function that returns the rows: it is
        then called only when a paper was not compared yet (the rows cost more than the lookup)."""
        with self.lock:
            todo = [i for i, pid in enumerate(paper_ids) if pid not in self._similarities]
        if todo:
            if callable(tf):
                tf = tf()
            rows = self.weigh(tf[todo]) @ self._columns
            dense = rows.toarray().astype(np.float32, copy=False)
            with self.lock:
                for k, i in enumerate(todo):
                    self._similarities[paper_ids[i]] = dense[k]
        with self.lock:
            if not paper_ids:
                return np.zeros((0, len(self.papers)), dtype=np.float32)
            return np.vstack([self._similarities[pid] for pid in paper_ids])


class Window:
    """The candidates of several editions as one (a weekly reader's window), weighted by the
    newest edition's idf; each edition keeps its own similarity cache."""

    def __init__(self, parts: Sequence[EditionFeatures]) -> None:
        self.parts = list(parts)
        self.papers = [paper for part in self.parts for paper in part.papers]
        self.position = {paper.id: i for i, paper in enumerate(self.papers)}
        self.object_position = {id(paper): i for i, paper in enumerate(self.papers)}

    def weigh(self, tf: sp.csr_matrix) -> sp.csr_matrix:
        return self.parts[-1].weigh(tf)

    def prepare(self, models: Sequence) -> None:
        for part in self.parts:
            part.prepare(models)

    def similarities(self, paper_ids: Sequence, tf: sp.csr_matrix | Callable[[], sp.csr_matrix]) -> np.ndarray:
        if callable(tf):  # the rows once for every part that needs them
            tf = _once(tf)
        return np.hstack([part.similarities(paper_ids, tf) for part in self.parts])


def _once(make: Callable[[], sp.csr_matrix]) -> Callable[[], sp.csr_matrix]:
    kept: list = []

    def rows() -> sp.csr_matrix:
        if not kept:
            kept.append(make())
        return kept[0]

    return rows


def _liked_tf(model) -> sp.csr_matrix:
    return model.liked_tf


def _disliked_tf(model) -> sp.csr_matrix:
    return model.disliked_tf
