#!/usr/bin/env bash
# Install what the tests need, then run every test twice: with the newest PyPI releases
# and with the versions Debian 12 ships. As root, Debian's packages for the Docker,
# systemd and packaging tests are installed with apt; as another user those tests skip.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
    docker.io docker-registry amazon-ecr-credential-helper iproute2 openssl curl
    python3-venv python3-boto3 python3-docker python3-sdnotify python3-tomli python3-bcrypt
    debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools
    lintian rpm rpmlint man-db
)
NEWEST=.venv
DEBIAN12=.venv-debian12

say() { printf '\n=== %s\n' "$*"; }

# pip, quietly: its output only when it fails.
pip_install() {
    local pip=$1; shift
    "$pip" install -q "$@" > /tmp/ecr-agent-pip.log 2>&1 || { cat /tmp/ecr-agent-pip.log; return 1; }
}

install_debian_packages() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        say "not root or no apt-get: Docker, systemd and package tests will skip"
        return 0
    fi
    local missing=()
    for package in "${DEBIAN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" ||
            missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "apt-get install ${missing[*]}"
    # policy-rc.d keeps the packages' services (dockerd, the registry) from starting on the host.
    local policy=/usr/sbin/policy-rc.d created=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && created=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" > /tmp/ecr-agent-apt.log 2>&1 || { tail -30 /tmp/ecr-agent-apt.log; exit 1; }
    [ -z "$created" ] || rm -f "$policy"
}

make_newest_venv() {
    [ -x "$NEWEST/bin/python" ] || python3 -m venv "$NEWEST"
    pip_install "$NEWEST/bin/pip" --upgrade pip
    pip_install "$NEWEST/bin/pip" -e . -r tests/requirements.txt
}

make_debian12_venv() {
    if [ -x "$DEBIAN12/bin/python" ]; then
        :
    elif /usr/bin/python3 -c 'import boto3, docker, sdnotify, ensurepip' 2>/dev/null; then
        # Debian's own python3 packages, as the .deb uses them.
        /usr/bin/python3 -m venv --system-site-packages "$DEBIAN12"
    else
        python3 -m venv "$DEBIAN12"
        pip_install "$DEBIAN12/bin/pip" -r tests/requirements-debian12.txt
    fi
    pip_install "$DEBIAN12/bin/pip" pytest hypothesis
    pip_install "$DEBIAN12/bin/pip" --no-deps -e .
}

install_debian_packages
say "virtual environments"
make_newest_venv
make_debian12_venv
"$DEBIAN12/bin/python" -c 'import boto3, botocore, docker, requests
print("debian12 set: boto3", boto3.__version__, "botocore", botocore.__version__,
      "docker", docker.__version__, "requests", requests.__version__)'
"$NEWEST/bin/python" -c 'import boto3, docker, requests
print("newest set: boto3", boto3.__version__, "docker", docker.__version__,
      "requests", requests.__version__)'

say "ruff"
"$NEWEST/bin/ruff" format --check ecr_agent tests $( [ -d benchmarks ] && echo benchmarks )
"$NEWEST/bin/ruff" check ecr_agent tests $( [ -d benchmarks ] && echo benchmarks )

export AWS_EC2_METADATA_DISABLED=true
export ECR_AGENT_MOTO_PYTHON=$PWD/$NEWEST/bin/python

say "tests with the Debian 12 dependency set (unit and integration)"
"$DEBIAN12/bin/python" -m pytest -q -p no:cacheprovider -m "not e2e and not system and not packaging" "$@"

if [ "$(id -u)" = 0 ] && command -v dpkg-buildpackage >/dev/null; then
    say "make deb: the systemd tests install this package"
    make deb > /tmp/ecr-agent-deb.log 2>&1 || { tail -30 /tmp/ecr-agent-deb.log; exit 1; }
    ECR_AGENT_DEB=$(ls -t "$PWD"/dist/ecr-agent_*_all.deb | head -1)
    export ECR_AGENT_DEB
    echo "$ECR_AGENT_DEB"
fi

say "all tests with the newest dependency set"
"$NEWEST/bin/python" -m pytest -q -p no:cacheprovider -rs "$@"
