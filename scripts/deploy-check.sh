#!/usr/bin/env bash
# `make deploy-check`: every deployment artefact checked offline: hadolint (docker/), shellcheck,
# yamllint, kustomize overlays and the Helm chart rendered and validated against the Kubernetes
# schemas (strict), Terraform fmt + structure, the nginx site in front of a running gateway, the
# systemd units, and the backup script against a real PostgreSQL. Part of `make test` too.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/apt-install.sh postgresql nginx systemd openssl
exec "$root/.venv/bin/python" -m pytest tests/deploy -q -p no:cacheprovider "$@"
