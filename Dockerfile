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
    && groupadd --system --gid 10001 stream-monitor \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /var/lib/stream-monitor \
        --shell /usr/sbin/nologin stream-monitor

# The worker's working directory (Faust keeps a small data dir there) is owned by its user.
# A numeric USER lets Kubernetes check runAsNonRoot; the Helm chart runs as this uid
# (deploy/helm/stream-monitor values podSecurityContext.runAsUser).
USER 10001
WORKDIR /var/lib/stream-monitor

CMD ["stream-monitor", "worker", "--config", "/etc/stream-monitor/monitor.yaml"]
