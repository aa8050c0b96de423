"""The web app: subscribe, confirm, settings, unsubscribe and the full-edition page.

`create_app(settings)` builds a FastAPI app; `digest web` serves it with uvicorn on PORT, with the
limits of digest/web/server.py. Routes
(digest/web/routes.py) only parse the request, call one function of digest.subscriptions and
render a template: every decision lives in the library.
"""

from __future__ import annotations

from fastapi import FastAPI

from digest.web.app import create_app
from digest.web.server import serve, server_config

__all__ = ["create_app", "FastAPI", "serve", "server_config"]
