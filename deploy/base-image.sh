#!/usr/bin/env bash
# Prepare this machine to build and run the Bento's container without Docker or a registry:
# podman + runc from Debian, a Debian bookworm base made with debootstrap from the machine's own
# apt mirror, Python 3.11 from Debian, and the machine's CA bundle (so pip inside the build can
# reach the package index). Tags it as the image `bentoml containerize` starts from.
# Used by deploy/check.py (make deploy-check) when the base images are missing; then:
#       bentoml containerize --backend podman churn_service:latest -t churn-service:dev --opt network=host
#       podman run --rm --network host -e BENTOML_PORT=3300 churn-service:dev
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
command -v podman >/dev/null && command -v runc >/dev/null && command -v debootstrap >/dev/null || {
  apt-get update -qq && apt-get install -y -qq podman runc debootstrap >/dev/null; }
mkdir -p /etc/containers
grep -q 'runtime = "runc"' /etc/containers/containers.conf 2>/dev/null || cat >/etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
CONF
if ! podman image exists localhost/debian:bookworm-min; then
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
  root=$(mktemp -d); debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
  tar -C "$root" -c . | podman import - localhost/debian:bookworm-min >/dev/null; rm -rf "$root"
fi
if ! podman image exists docker.io/library/python:3.11-slim; then
  ctx=$(mktemp -d); cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca.crt"
  cat >"$ctx/Containerfile" <<'CF'
FROM localhost/debian:bookworm-min
COPY ca.crt /etc/ssl/certs/machine-ca-bundle.crt
RUN apt-get update -y && apt-get install -y --no-install-recommends python3 python3-pip python3-venv ca-certificates \
 && rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED && ln -sf /usr/bin/python3 /usr/local/bin/python \
 && ln -sf /usr/bin/pip3 /usr/local/bin/pip && rm -rf /var/lib/apt/lists/*
ENV SSL_CERT_FILE=/etc/ssl/certs/machine-ca-bundle.crt PIP_CERT=/etc/ssl/certs/machine-ca-bundle.crt REQUESTS_CA_BUNDLE=/etc/ssl/certs/machine-ca-bundle.crt
CF
  podman build --network host -t docker.io/library/python:3.11-slim "$ctx" >/dev/null; rm -rf "$ctx"
fi
echo "ready: podman $(podman --version | awk '{print $3}'), base image docker.io/library/python:3.11-slim"
