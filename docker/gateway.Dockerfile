# syntax=docker/dockerfile:1
# XRouter gateway image: the HTTP tier (xrouter-common + xrouter-gateway from this repository,
# dependencies pinned by constraints.txt). No router code, no database or Redis driver.
#   docker build -f docker/gateway.Dockerfile -t ghcr.io/xrouter/xrouter-gateway:0.1.0 .
# docker/README.md explains the base image pin and how to rebuild reproducibly.

FROM python:3.11.17-slim-bookworm@sha256:2333bd330d12de02514770b3585cad313644316047cdee24a7acfdece6de6efb AS base

# ---- builder: a virtual environment in /opt/xrouter ------------------------------------------
FROM base AS builder
# Fixed by default so wheels and .pyc files (checked-hash mode) come out the same on every
# build; pass --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) to stamp the commit time.
ARG SOURCE_DATE_EPOCH=315532800
ARG SETUPTOOLS_VERSION=84.2.1
ENV SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH} \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY constraints.txt ./
COPY libs/common libs/common
COPY services/gateway services/gateway
# Not editable: the packages are copied into site-packages, so /src is not needed at run time.
# setuptools is pinned and the build is not isolated, so no unpinned build tool is fetched.
RUN python -m venv /opt/xrouter \
    && /opt/xrouter/bin/pip install --no-cache-dir "setuptools==${SETUPTOOLS_VERSION}" \
    && /opt/xrouter/bin/pip install --no-cache-dir --no-build-isolation -c constraints.txt \
        ./libs/common ./services/gateway \
    && /opt/xrouter/bin/pip uninstall --yes setuptools pip \
    && /opt/xrouter/bin/python -c "import importlib.util as u, sys; found = [m for m in ('xrouter_router', 'psycopg', 'redis', 'aiohttp') if u.find_spec(m)]; sys.exit(f'the gateway image must not carry {found}' if found else 0)"

# ---- runtime ---------------------------------------------------------------------------------
FROM base AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="xrouter-gateway" \
      org.opencontainers.image.description="XRouter gateway: OpenAI/OpenRouter-compatible HTTP API in front of the XRouter router" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/xrouter/xrouter" \
      org.opencontainers.image.url="https://github.com/xrouter/xrouter" \
      org.opencontainers.image.vendor="XRouter" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.17-slim-bookworm"
RUN groupadd --system --gid 10001 xrouter \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin xrouter
COPY --from=builder /opt/xrouter /opt/xrouter
# A read-only root filesystem works: nothing is written at run time except, with
# XROUTER_GATEWAY_WORKERS > 1, prometheus' multiprocess files in /tmp (mount a tmpfs there).
ENV PATH=/opt/xrouter/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    XROUTER_GATEWAY_HOST=0.0.0.0 \
    XROUTER_GATEWAY_PORT=8000
WORKDIR /tmp
USER 10001:10001
EXPOSE 8000
# Liveness of the process itself (/livez); /readyz and /health also depend on the router.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/opt/xrouter/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('XROUTER_GATEWAY_PORT', '8000'), timeout=4)"]
# SIGTERM: uvicorn stops accepting and gives open requests and streams up to 30 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/xrouter/bin/xrouter-gateway"]
