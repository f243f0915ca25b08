#!/usr/bin/env bash
# Show `docker pull` from a local ECR working with only the Docker config file that
# ecr-agent writes. The local ECR is the e2e rig: moto for the ECR API, a TLS registry
# with htpasswd and a private dockerd, all in a network namespace that is torn down at
# the end. Without root, the Debian packages or moto, it prints why and exits 0.
#
# Usage: tests/demo-pull.sh PYTHON   (an interpreter that can import ecr_agent)
set -euo pipefail
cd "$(dirname "$0")/.."

python=${1:?usage: tests/demo-pull.sh PYTHON}
exec "$python" -m tests.e2e.rig demo --python "$python"
