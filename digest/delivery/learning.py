"""What a process keeps to rank by readers' marks: each reader's fitted model, refitted only when
their `feedback_version` moved, the vectors of the papers they marked (any edition), and each
edition's text features, built once per edition version as its match index is. The composer asks
it for the models of a batch's readers in bulk: two queries for the batch, none for a reader
whose model is cached or who has no marks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import Integer, String, select
from sqlalchemy.orm import Session

from digest.delivery import ledger
from digest.editions import Edition, EditionCache
from digest.models import Feedback, Paper
from digest.relevance import EditionFeatures, FeatureCache, ModelCache, ReaderModel, fit, paper_key


class ReaderModels:
    """Per process, beside the composer's EditionCache (whose editions' features it prunes with)."""

    def __init__(self, cache: EditionCache) -> None:
        self.cache = cache
        self.vectors = FeatureCache()
        self.models = ModelCache()
        self._features: dict[date, tuple[tuple, EditionFeatures]] = {}

    def features(self, edition: Edition) -> EditionFeatures:
        """The edition's text features, built once per edition version (as its match index)."""
        kept = self._features.get(edition.day)
        if kept is None or kept[0] != edition.version:
            kept = self._features[edition.day] = (edition.version, EditionFeatures.build(edition.papers))
            for stale in [d for d in self._features if self.cache.cached(d) is None and d != edition.day]:
                del self._features[stale]  # its edition left the cache
        return kept[1]

    def of(self, session: Session, recipients: Sequence) -> dict[int, ReaderModel | None]:
        """The models of the readers (compose.Recipient) who learn (learning on, some marks), by
        subscriber id. Those
        whose model is cached at their feedback_version cost a lookup; the others' marks are read
        in one query, the marked papers in one more, and only papers never seen are vectorized."""
        models: dict[int, ReaderModel | None] = {}
        refit: dict = {}
        for recipient in recipients:
            if not recipient.learns or recipient.id in models:
                continue
            found, model = self.models.get((recipient.id, recipient.link_secret), recipient.feedback_version)
            if found and model is not None and not all(
                    key in self.vectors for key in (*model.liked_keys, *model.disliked_keys)):
                found = False  # a marked paper's vector left the bounded cache: fit again (reads it again)
            if found:
                models[recipient.id] = model
            else:
                refit[recipient.id] = recipient
        if not refit:
            return models
        marks: dict[int, list[tuple[str, bool]]] = {sid: [] for sid in refit}
        for subscriber_id, paper_id, liked in session.execute(
            select(Feedback.subscriber_id, Feedback.paper_id, Feedback.liked)
            .where(ledger.among(session, Feedback.subscriber_id, list(refit), Integer))
            .order_by(Feedback.subscriber_id, Feedback.created_at, Feedback.paper_id)
        ):
            marks[subscriber_id].append((paper_id, liked))
        wanted = sorted({paper_id for rows in marks.values() for paper_id, _ in rows})
        papers = {}
        if wanted:
            # Titles and versions first; the texts only of papers this process has not vectorized
            # (after the first batches, a marked paper has been seen by another reader's model).
            papers = {paper.id: paper for paper in session.execute(
                select(Paper.id, Paper.title, Paper.updated_at).where(ledger.among(session, Paper.id, wanted, String))
            )}
            unseen = [paper.id for paper in papers.values() if paper_key(paper) not in self.vectors]
            if unseen:
                texts = session.execute(
                    select(Paper.id, Paper.title, Paper.abstract, Paper.authors, Paper.updated_at)
                    .where(ledger.among(session, Paper.id, unseen, String))
                ).all()
                self.vectors.add(texts, [paper_key(p) for p in texts])
                papers.update((paper.id, paper) for paper in texts)  # a refetch in between: its newer version
        for subscriber_id, recipient in refit.items():
            rows = [(papers[pid], liked) for pid, liked in marks[subscriber_id] if pid in papers]
            model = fit([p for p, liked in rows if liked], [p for p, liked in rows if not liked], self.vectors.matrix)
            self.models.put((recipient.id, recipient.link_secret), recipient.feedback_version, model)
            models[subscriber_id] = model
        return models

