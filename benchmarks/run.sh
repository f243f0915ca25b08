#!/usr/bin/env bash
# Benchmark ecr-agent against a DIY cron job and docker-credential-ecr-login; write
# BENCHMARKS.md. Arguments go to benchmarks/main.py (--help lists them; the defaults take
# about 15 minutes on 2 CPUs).
#
# Needs root (network namespace, dockerd) and Debian's docker.io, docker-registry,
# amazon-ecr-credential-helper and python3-boto3/-docker/-sdnotify, which it installs
# with apt-get when they are missing. The newest PyPI releases go into benchmarks/.venv,
# with awscli (v1) and moto.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=benchmarks/.venv
DEBIAN_PACKAGES=(
    docker.io docker-registry amazon-ecr-credential-helper iproute2 openssl
    python3-venv python3-boto3 python3-docker python3-sdnotify
)
PYPI_PACKAGES=(boto3 docker sdnotify awscli "moto[server]" bcrypt py-spy)

if [ "$(id -u)" != 0 ] && [[ " $* " != *" --moto-only "* ]]; then
    echo "benchmarks: needs root (network namespace, dockerd)" >&2
    exit 1
fi

missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" ||
        missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
    echo "benchmarks: apt-get install ${missing[*]}"
    # policy-rc.d keeps the packages' services (dockerd, the registry) from starting.
    policy=/usr/sbin/policy-rc.d created=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && created=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" > /tmp/ecr-agent-bench-apt.log 2>&1 ||
        { tail -30 /tmp/ecr-agent-bench-apt.log; exit 1; }
    [ -z "$created" ] || rm -f "$policy"
fi

if ! "$VENV/bin/python" -c 'import boto3, docker, sdnotify, awscli, moto.server, bcrypt' \
        2>/dev/null; then
    echo "benchmarks: creating $VENV with the newest PyPI releases"
    /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip > /tmp/ecr-agent-bench-pip.log 2>&1 &&
        "$VENV/bin/pip" install -q --upgrade "${PYPI_PACKAGES[@]}" \
            >> /tmp/ecr-agent-bench-pip.log 2>&1 ||
        { tail -30 /tmp/ecr-agent-bench-pip.log; exit 1; }
fi

export ECR_AGENT_MOTO_PYTHON=$PWD/$VENV/bin/python
exec "$VENV/bin/python" -m benchmarks.main "$@"
