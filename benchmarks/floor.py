"""The floor: the least a Python program with ecr-agent's dependencies does to renew.

It imports boto3, docker and sdnotify, makes one GetAuthorizationToken call, writes the
token into a Docker config file atomically (temporary file, fsync, rename, fsync of the
directory, as ecr-agent writes), and sends ``READY=1`` to ``$NOTIFY_SOCKET`` when the
file is in place. With ``--sleep`` it then waits for SIGTERM, so that its resident size
can be read. The benchmarks compare ecr-agent's start-up, one-shot run and idle memory
with this script.
"""

import argparse
import json
import os
import signal
import sys
import tempfile

import boto3
import botocore.config
import docker  # noqa: F401 - imported because ecr-agent depends on it
import sdnotify


def fetch_auth(region: str, endpoint_url: str, account: str) -> tuple[str, str]:
    """Return the registry host and the Docker ``auth`` value of one token call."""
    config = botocore.config.Config(user_agent_extra="bench-floor/1")
    client = boto3.client("ecr", region_name=region, endpoint_url=endpoint_url, config=config)
    entry = client.get_authorization_token(registryIds=[account])["authorizationData"][0]
    host = entry["proxyEndpoint"].split("://", 1)[-1].rstrip("/")
    return host, entry["authorizationToken"]


def write_atomically(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(prefix=".floor-", dir=directory)
    try:
        os.write(descriptor, data)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, path)
    directory_descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory_descriptor)
    finally:
        os.close(directory_descriptor)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--region", required=True)
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--account", required=True)
    parser.add_argument("--output", required=True, help="Docker config file to write")
    parser.add_argument("--sleep", action="store_true", help="wait for SIGTERM afterwards")
    args = parser.parse_args(argv)

    host, auth = fetch_auth(args.region, args.endpoint_url, args.account)
    document = {"auths": {host: {"auth": auth}}}
    write_atomically(args.output, json.dumps(document, indent="\t").encode())
    sdnotify.SystemdNotifier().notify("READY=1")

    if args.sleep:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
