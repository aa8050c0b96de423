#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh Debian machine, then runs it:
# a virtual environment with the project, Debian's chromium (browser tests) and postfix
# (smtp-sink, for the delivery benchmark), PostgreSQL and Redis on their standard local ports.
# The suite runs twice: everything on PostgreSQL, then the store-level tests on SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v smtp-sink >/dev/null 2>&1 || [ -x /usr/sbin/smtp-sink ] || need_apt+=(postfix)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)  # the DKIM test makes a key
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "The tests need Debian packages: ${need_apt[*]}. Run: sudo apt-get install -y ${need_apt[*]}" >&2
    exit 1
  fi
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# PostgreSQL and Redis: started when this machine did not start them already.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 30); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 1; done
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[test]"

mkdir -p artifacts
echo "== the layering of docs/architecture.md (import-linter) =="
.venv/bin/lint-imports
echo "== tests on PostgreSQL, with real Redis, Celery workers, SMTP servers and Chromium =="
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
echo "== store-level tests on SQLite =="
DIGEST_TEST_DB=sqlite .venv/bin/python -m pytest -q -p no:cacheprovider -m "not integration and not browser" "$@"
