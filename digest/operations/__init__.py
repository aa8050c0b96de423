"""Running the service: readiness (`health`), Prometheus metrics (`metrics`), the admin console's
sign-in and actions (`admin`) and what it shows (`console`), `digest check` (`check`) and the
log format (`logs`)."""

from digest.operations.admin import (
    COOKIE as ADMIN_COOKIE,
    ActionRefused,
    credentials_match,
    delete_subscriber,
    remove_suppression,
    resend_confirmation,
    retry_delivery,
    session_cookie,
    session_seconds,
    signed_in,
    signed_in_user,
    signed_out,
    suppress,
)
from digest.operations.check import Check, CheckReport, run_checks
from digest.operations.console import (
    LATE_AFTER,
    Overview,
    SubscriberPage,
    audit_entries,
    overview,
    problem_deliveries,
    search_subscribers,
    subscriber_page,
    suppressions,
)
from digest.operations.health import Readiness, readiness
from digest.operations.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from digest.operations.logs import JsonFormatter, configure_logging
from digest.operations.metrics import count_into_store, metrics_text, scrape_allowed, stop_counting

__all__ = [
    "ADMIN_COOKIE",
    "LATE_AFTER",
    "METRICS_CONTENT_TYPE",
    "ActionRefused",
    "Check",
    "CheckReport",
    "JsonFormatter",
    "Overview",
    "Readiness",
    "SubscriberPage",
    "audit_entries",
    "configure_logging",
    "count_into_store",
    "credentials_match",
    "delete_subscriber",
    "metrics_text",
    "overview",
    "problem_deliveries",
    "readiness",
    "remove_suppression",
    "resend_confirmation",
    "retry_delivery",
    "run_checks",
    "scrape_allowed",
    "search_subscribers",
    "session_cookie",
    "session_seconds",
    "signed_in",
    "signed_in_user",
    "signed_out",
    "stop_counting",
    "subscriber_page",
    "suppress",
    "suppressions",
]
