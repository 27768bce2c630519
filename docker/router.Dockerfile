# syntax=docker/dockerfile:1
# XRouter router image: the gRPC tier (xrouter-common + xrouter-router from this repository,
# dependencies pinned by constraints.txt), with the operator CLI `xrouter` (xrouter migrate).
#   docker build -f docker/router.Dockerfile -t ghcr.io/xrouter/xrouter-router:0.1.0 .
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
COPY services/router services/router
# Not editable: the packages are copied into site-packages, so /src is not needed at run time.
# setuptools is pinned and the build is not isolated, so no unpinned build tool is fetched.
# psycopg[binary] and the other drivers come as manylinux wheels: no compiler needed.
RUN python -m venv /opt/xrouter \
    && /opt/xrouter/bin/pip install --no-cache-dir "setuptools==${SETUPTOOLS_VERSION}" \
    && /opt/xrouter/bin/pip install --no-cache-dir --no-build-isolation -c constraints.txt \
        ./libs/common ./services/router \
    && /opt/xrouter/bin/pip uninstall --yes setuptools pip

# ---- runtime ---------------------------------------------------------------------------------
FROM base AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="xrouter-router" \
      org.opencontainers.image.description="XRouter router: gRPC service for auth, routing, failover, limits and accounting" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/xrouter/xrouter" \
      org.opencontainers.image.url="https://github.com/xrouter/xrouter" \
      org.opencontainers.image.vendor="XRouter" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.17-slim-bookworm"
RUN groupadd --system --gid 10001 xrouter \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin xrouter \
    && install --directory --owner=10001 --group=10001 --mode=0700 /var/lib/xrouter
COPY --from=builder /opt/xrouter /opt/xrouter
# A read-only root filesystem works: writes go only to XROUTER_DATA_DIR (the embedded mode's
# SQLite database and key secret; unused with XROUTER_DATABASE_URL) and, if writable, /tmp
# (tiktoken caches a copy of the shipped token ranks there, and carries on when it cannot).
ENV PATH=/opt/xrouter/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    XROUTER_ROUTER_LISTEN=[::]:50051 \
    XROUTER_ROUTER_METRICS_PORT=9100 \
    XROUTER_DATA_DIR=/var/lib/xrouter
VOLUME ["/var/lib/xrouter"]
WORKDIR /var/lib/xrouter
USER 10001:10001
# gRPC (xrouter.v1.Router + grpc.health.v1) and Prometheus /metrics.
EXPOSE 50051 9100
# The gRPC health check the gateway's /readyz uses: SERVING, or the container is unhealthy. With
# mutual TLS on 50051 it asks the plaintext health-only port, XROUTER_ROUTER_HEALTH_LISTEN.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["/opt/xrouter/bin/python", "-c", "import os, sys, grpc; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; port = (os.environ.get('XROUTER_ROUTER_HEALTH_LISTEN') or os.environ.get('XROUTER_ROUTER_LISTEN', '[::]:50051')).rpartition(':')[2]; reply = g.HealthStub(grpc.insecure_channel('127.0.0.1:' + port)).Check(h.HealthCheckRequest(), timeout=4); sys.exit(reply.status != h.HealthCheckResponse.SERVING)"]
# SIGTERM: health turns NOT_SERVING, in-flight calls get XROUTER_SHUTDOWN_GRACE (30 s) to finish.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/xrouter/bin/xrouter-router"]
