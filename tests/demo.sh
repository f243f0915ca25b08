#!/usr/bin/env bash
# `make demo`: renew credentials from a local ECR emulator into a throw-away Docker config.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
say() { printf '\n=== %s\n' "$*"; }

if ! python3 -c 'import ensurepip' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "apt-get install python3-venv"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    else
        echo "python3 cannot create virtual environments: install python3-venv (apt-get install python3-venv)" >&2
        exit 1
    fi
fi

if ! [ -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import ecr_agent, moto' 2>/dev/null; then
    say "creating $VENV (ecr-agent and moto from PyPI)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -e . 'moto[server]' > "$VENV/pip.log" 2>&1 ||
        { cat "$VENV/pip.log" >&2; exit 1; }
fi

WORK=$(mktemp -d /tmp/ecr-agent-demo.XXXXXX)
EMULATOR_PID=""
cleanup() {
    [ -z "$EMULATOR_PID" ] || kill "$EMULATOR_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

say "starting the local ECR emulator (moto) on 127.0.0.1"
AWS_EC2_METADATA_DISABLED=true "$VENV/bin/python" -m tests.ecr_emulator \
    > "$WORK/emulator.url" 2> "$WORK/emulator.log" &
EMULATOR_PID=$!
for _ in $(seq 300); do [ -s "$WORK/emulator.url" ] && break; sleep 0.1; done
ENDPOINT=$(head -1 "$WORK/emulator.url")
if [[ "$ENDPOINT" != http://127.0.0.1:* ]]; then
    echo "the ECR emulator did not start:" >&2
    cat "$WORK/emulator.log" >&2
    exit 1
fi
echo "ECR API: $ENDPOINT"

cat > "$WORK/ecr-agent.toml" <<TOML
[agent]
state_dir = "$WORK/state"

[aws]
region = "us-east-1"
endpoint_url = "$ENDPOINT"

[[registry]]
account = "123456789012"

[[registry]]
account = "210987654321"
region = "eu-west-1"

[docker]
config_files = ["$WORK/docker/config.json"]
verify_login = false
TOML

export AWS_EC2_METADATA_DISABLED=true
export AWS_ACCESS_KEY_ID=AKIADEMOSTANDIN00001 AWS_SECRET_ACCESS_KEY=demo-stand-in-secret
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

say "ecr-agent --config $WORK/ecr-agent.toml refresh"
"$VENV/bin/ecr-agent" --config "$WORK/ecr-agent.toml" refresh

say "ecr-agent status"
"$VENV/bin/ecr-agent" --config "$WORK/ecr-agent.toml" status

say "$WORK/docker/config.json (passwords masked)"
sed -E 's/("auth": ")[^"]+/\1********/' "$WORK/docker/config.json"
echo

if [ -f tests/demo-pull.sh ]; then
    bash tests/demo-pull.sh "$PWD/$VENV/bin/python"
fi
