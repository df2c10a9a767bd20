# syntax=docker/dockerfile:1
# partner-stream worker image.
#
#   docker build -t partner-stream .
#   docker compose up            # worker + single-node Kafka, see docker-compose.yml
#
# Configuration is environment only (PARTNER_STREAM_*, see partner_stream/settings.py).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Unprivileged runtime user; it owns the RocksDB state directory, which compose
# mounts a named volume over (a fresh named volume copies this ownership).
RUN groupadd --system --gid 10001 partner \
 && useradd --system --uid 10001 --gid partner --home-dir /app --shell /usr/sbin/nologin partner \
 && mkdir -p /app /var/lib/partner-stream \
 && chown partner:partner /app /var/lib/partner-stream

# Build from a throw-away source tree so the installed package (site-packages),
# not a stray checkout in the working directory, is what runs.
# Each package directory gets its own COPY: `COPY a b dest/` would copy the
# *contents* of a and b, flattening the packages.
COPY pyproject.toml README.md /tmp/src/
COPY partner_stream /tmp/src/partner_stream
COPY tables /tmp/src/tables
COPY web /tmp/src/web
RUN pip install /tmp/src \
 && rm -rf /tmp/src

ENV PARTNER_STREAM_APP_DATADIR=/var/lib/partner-stream \
    PARTNER_STREAM_WEB_BIND=0.0.0.0 \
    PARTNER_STREAM_WEB_PORT=5003

WORKDIR /app
USER partner
EXPOSE 5003

# Slim has no curl; the stdlib is enough. Non-2xx or no answer -> exit 1.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PARTNER_STREAM_WEB_PORT', '5003'), timeout=4)"]

# Exec form: faust is PID 1 and gets SIGTERM directly, so it can commit offsets
# and close RocksDB cleanly (compose gives it stop_grace_period to do so).
CMD ["faust", "-A", "partner_stream", "worker", "-l", "info"]
