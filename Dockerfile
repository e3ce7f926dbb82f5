# The stream-monitor worker image (used by docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# The build context is filtered by .dockerignore (no .venv, .local, tests, caches).
COPY . /src
RUN pip install /src \
    && useradd --system --uid 10001 --user-group --create-home \
       --home-dir /var/lib/stream-monitor --shell /usr/sbin/nologin stream-monitor

# Non-root with a numeric UID (Kubernetes runAsNonRoot can check it), and nothing written
# outside /tmp: the image runs with a read-only root filesystem (docs/security.md shows the
# securityContext; mount an emptyDir on /tmp). Configs and secrets come from mounted files.
USER 10001:10001
WORKDIR /var/lib/stream-monitor
ENV HOME=/var/lib/stream-monitor \
    TMPDIR=/tmp

CMD ["stream-monitor", "worker", "--config", "/etc/stream-monitor/monitor.yaml"]
