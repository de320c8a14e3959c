# syntax=docker/dockerfile:1
# brokercast container image.
#
#   docker build -t brokercast .
#   docker run --rm -p 3232:3232 \
#       -v "$PWD/settings.toml:/etc/brokercast/settings.toml:ro" brokercast
#
# Two stages: the builder resolves the pinned dependencies and the brokercast
# wheel into a virtual environment; the runtime stage copies only that
# environment, so no pip cache, build backend or source tree ships.

# Both stages must use the same base: the venv's python is a symlink into it.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/brokercast/bin:$PATH

RUN python -m venv /opt/brokercast
WORKDIR /src

# Dependencies get their own layer, so a change to service/ reuses it.
COPY docker/requirements.txt docker/requirements.txt
RUN pip install --no-cache-dir --requirement docker/requirements.txt

# --no-deps: every dependency is already installed at its pinned version.
COPY pyproject.toml README.md ./
COPY service service
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/wheels . \
    && pip install --no-cache-dir --no-deps /tmp/wheels/brokercast-*.whl

FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="brokercast" \
      org.opencontainers.image.description="Broadcast Kafka topics and Redis streams to websocket clients." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

# PYTHONUNBUFFERED: log records reach docker logs / kubectl logs at once.
# PYTHONDONTWRITEBYTECODE: nothing to write under a read-only root filesystem.
# BROKERCAST_CONFIG: the settings file; mount your own over it. A .secrets.toml
# beside it is read too. BROKERCAST_* variables override both.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/brokercast/bin:$PATH \
    BROKERCAST_CONFIG=/etc/brokercast/settings.toml

# A fixed numeric id, so Kubernetes can verify runAsNonRoot without reading
# /etc/passwd; the account exists only to give the id a name in ps and logs.
RUN groupadd --system --gid 10001 brokercast \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin brokercast

COPY --from=builder /opt/brokercast /opt/brokercast
COPY docker/settings.toml /etc/brokercast/settings.toml

USER 10001:10001
EXPOSE 3232

# slim images have no curl; the port follows BROKERCAST_PORT when it is set.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('BROKERCAST_PORT', '3232') + '/healthz', timeout=2)"]

# brokercast runs as PID 1 without an init: it installs its own SIGTERM and
# SIGINT handlers (the kernel would drop a signal that PID 1 has no handler
# for) and starts no child processes, so there are no zombies to reap.
# On SIGTERM it closes clients with 1001 and exits 0 within shutdown_timeout
# (10 s by default), so give docker stop more than that: docker stop -t 20.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "service"]
