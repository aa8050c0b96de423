"""Delivery, one stage a module (docs/delivery.md, docs/architecture.md):

    windows   pure policy: which editions a digest covers, back-off, giving up
    ledger    every statement on the deliveries table
    recorder  each outcome written as the server answered, kept until durable
    due       who is due: dispatch, sweep, the rows of `send --edition`
    compose   loading jobs and building digests, in bulk or for one subscriber; never sends
    send      the batch sender: claim, build, send, record
    runner    `digest send` in one process: dispatch in a thread, builders forked ahead

The same steps serve Celery (`dispatch`, then `send_batch` per task) and `digest send`.
"""

from digest.delivery.compose import (
    DigestComposer,
    DigestPreview,
    build_batch,
    composer_for,
    edition_page,
    preview_digest,
    reader_model,
    topic_matches,
)
from digest.delivery.due import DispatchReport, create_edition_rows, dispatch, schedule_unscheduled, sweep
from digest.delivery.ledger import claim
from digest.delivery.recorder import Recorder, RecordingLost
from digest.delivery.runner import SendRun, send_now
from digest.delivery.send import SendReport, send_batch
from digest.delivery.windows import backoff, window_start
from digest.mail import check_sending

__all__ = [
    "DigestComposer",
    "DigestPreview",
    "DispatchReport",
    "Recorder",
    "RecordingLost",
    "SendReport",
    "SendRun",
    "backoff",
    "build_batch",
    "check_sending",
    "claim",
    "composer_for",
    "create_edition_rows",
    "dispatch",
    "edition_page",
    "preview_digest",
    "reader_model",
    "schedule_unscheduled",
    "send_batch",
    "send_now",
    "sweep",
    "topic_matches",
    "window_start",
]
