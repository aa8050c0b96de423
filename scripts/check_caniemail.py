"""Check the sample emails (digest, "nothing matched", confirmation) against caniemail's data for
Gmail, Outlook and Apple Mail, and print what each client does not (fully) support.

    python scripts/check_caniemail.py

Needs node and npm: installs the pinned `caniemail` package (scripts/caniemail/package*.json)
into build/caniemail once, renders the emails as they are sent, and runs check_caniemail.mjs.
docs/email.md lists what remains and why it stays.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest.config import SAMPLE_PAPERS, load_settings  # noqa: E402
from digest.matching import EditionIndex, rank  # noqa: E402
from digest.models import Paper  # noqa: E402
from digest.mail import DigestLinks, EditionRenderer, render_email  # noqa: E402

BUILD = ROOT / "build" / "caniemail"
EDITION = date(2026, 11, 26)


def install() -> Path:
    module = BUILD / "node_modules" / "caniemail" / "dist" / "index.js"
    if not module.exists():
        BUILD.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(ROOT / "scripts" / "caniemail" / name, BUILD / name)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BUILD, check=True)
    return module


def sample_html() -> dict[str, str]:
    settings = load_settings(base_url="https://digest.example.org", secret_key="caniemail-check-secret-key-0123456789")
    papers = []
    for line in SAMPLE_PAPERS.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        papers.append(Paper(
            id=record["id"], title=record["title"], abstract=record.get("abstract", ""),
            authors=record.get("authors", []), categories=[], upvotes=record.get("upvotes", 0),
            github_repo=record.get("github_repo"), project_page=record.get("project_page"), keywords=[],
            sources=["hf"], edition=EDITION, published_at=datetime(2026, 11, 25, tzinfo=timezone.utc),
        ))
    topics = ["pretraining", "diffusion", "video generation"]
    matches = rank(EditionIndex.build(papers), topics)
    base = "https://digest.example.org"
    links = DigestLinks(f"{base}/settings/t", f"{base}/unsubscribe/t", f"{base}/digest/{EDITION}/t", f"{base}/digest/{EDITION}/t")
    renderer = EditionRenderer(settings, EDITION)
    return {
        "digest": renderer.render_digest("ana@example.org", topics, matches[:10], len(matches), links).html,
        "empty": renderer.render_empty("ana@example.org", ["quantum gravity"], links).html,
        "confirm": render_email("confirm", settings=settings, email="ana@example.org",
                                confirm_url=f"{base}/confirm/t", topics=topics).html,
    }


def main() -> int:
    module = install()
    files = []
    for name, html in sample_html().items():
        path = BUILD / f"{name}.html"
        path.write_text(html, encoding="utf-8")
        files.append(str(path))
    env = {**os.environ, "CANIEMAIL_MODULE": str(module)}
    return subprocess.run(["node", str(ROOT / "scripts" / "check_caniemail.mjs"), *files], env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
