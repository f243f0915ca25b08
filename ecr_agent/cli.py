"""The ``ecr-agent`` command line."""

import argparse
import faulthandler
import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from ecr_agent import __version__, logs
from ecr_agent.config import DEFAULT_PATH, AgentSettings, Config, load_config, tomllib
from ecr_agent.errors import EX_CONFIG, ConfigError, TokenError
from ecr_agent.state import read_state

log = logging.getLogger("ecr_agent")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="ecr-agent",
        description="Keep Amazon ECR Docker credentials fresh on this host.",
    )
    parser.add_argument("--version", action="version", version=f"ecr-agent {__version__}")
    parser.add_argument(
        "--config",
        metavar="PATH",
        help=f"configuration file (default: $ECR_AGENT_CONFIG, then {DEFAULT_PATH})",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("run", help="renew forever, as the systemd service does")
    commands.add_parser("refresh", help="renew every registry once, then exit")
    check = commands.add_parser("check-config", help="validate and print the configuration")
    check.add_argument(
        "--live", action="store_true", help="also make the token calls; write nothing"
    )
    status = commands.add_parser("status", help="show expiry, last success and errors")
    status.add_argument("--json", action="store_true", help="print the state as JSON")
    return parser.parse_args(argv)


# The handling of the Rancher secret key for each command (see load_config).
_SECRETS = {"run": "read", "refresh": "read", "check-config": "check", "status": "skip"}


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    path = Path(args.config or os.environ.get("ECR_AGENT_CONFIG") or DEFAULT_PATH)
    logs.setup("info")
    try:
        return _dispatch(args, path)
    except KeyboardInterrupt:
        log.error("interrupted; files already written are complete")
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (`ecr-agent status | head`): stop quietly, and keep
        # the interpreter from reporting the pipe again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _dispatch(args, path: Path) -> int:
    try:
        config = load_config(path, secrets=_SECRETS[args.command])
    except ConfigError as error:
        # Logged, not printed, so that journald files it at error priority.
        log.error("%s", error)
        if args.command == "status":
            return status_without_config(path)
        return EX_CONFIG

    logs.setup(config.agent.log_level)
    command = {
        "run": run,
        "refresh": refresh,
        "check-config": check_config,
        "status": status,
    }[args.command]
    return command(config, args)


def run(config: Config, args) -> int:
    from ecr_agent.agent import Agent
    from ecr_agent.notify import Notifier

    # A watchdog timeout ends the service with SIGABRT; faulthandler then writes every
    # thread's stack to stderr, so the journal shows where the agent hung.
    faulthandler.enable()
    return Agent(config, Notifier()).run()


def refresh(config: Config, args) -> int:
    from ecr_agent.agent import Agent

    return 0 if Agent(config).refresh() else 1


def check_config(config: Config, args) -> int:
    print(render_config(config), end="")
    rancher = config.rancher
    if rancher is not None and rancher.secret_key_file and not rancher.secret_key:
        print(
            f"# rancher.secret_key_file names the systemd credential {rancher.secret_key_file!r};"
            " only the service can read it, so it is not checked here"
        )
    if not args.live:
        return 0
    return 0 if check_live(config) else 1


def check_live(config: Config) -> bool:
    """Make each token call and report per registry; write no file."""
    from ecr_agent.tokens import TokenClient, plan_requests

    client = TokenClient(lambda: datetime.now(UTC))
    ok = True
    print("\n# live check: one GetAuthorizationToken call per credential source")
    for request in plan_requests(config.registries):
        try:
            result = client.fetch(request)
        except TokenError as error:
            for registry in request.registries:
                print(f"{registry.host}: FAILED: {error}")
            ok = False
            continue
        for registry in request.registries:
            credentials = result.credentials.get(registry.host)
            if credentials is None:
                print(f"{registry.host}: FAILED: {result.errors[registry.host]}")
                ok = False
            else:
                expiry = credentials.expires_at.isoformat(timespec="seconds")
                print(f"{registry.host}: ok, token expires at {expiry}")
    return ok


def render_config(config: Config) -> str:
    """Render the effective configuration as TOML, with the Rancher secret masked."""
    agent, renewal, docker = config.agent, config.renewal, config.docker
    lines = [
        f"# effective configuration of {config.path}",
        "[agent]",
        f"state_dir = {_toml(str(agent.state_dir))}",
        f"log_level = {_toml(agent.log_level)}",
        "",
        "[renewal]",
        f"lifetime_fraction = {renewal.lifetime_fraction}",
    ]
    for key in ("min_interval", "jitter", "retry_initial", "retry_max"):
        lines.append(f'{key} = "{getattr(renewal, key):g}s"')

    for registry in config.registries:
        source = registry.source
        lines += ["", "[[registry]]", f"# host: {registry.host}"]
        if registry.public:
            lines.append("public = true")
        else:
            lines += [f"account = {_toml(registry.account)}", f"region = {_toml(source.region)}"]
        for key in ("profile", "role_arn", "external_id", "endpoint_url", "sts_endpoint_url"):
            if getattr(source, key):
                lines.append(f"{key} = {_toml(getattr(source, key))}")
        if source.role_arn:
            lines.append(f"role_session_name = {_toml(source.role_session_name)}")
        for key in ("fips", "dualstack"):
            if getattr(source, key):
                lines.append(f"{key} = true")
        if registry.aliases:
            lines.append(f"aliases = {_toml(list(registry.aliases))}")

    lines += [
        "",
        "[docker]",
        f"config_files = {_toml([str(path) for path in docker.config_files])}",
        f"users = {_toml(list(docker.users))}",
        f"host = {_toml(docker.host)}",
        f"verify_login = {_toml(docker.verify_login)}",
        f"swarm_services = {_toml(docker.swarm_services)}",
    ]
    if config.rancher is not None:
        rancher = config.rancher
        lines += [
            "",
            "[rancher]",
            f"url = {_toml(rancher.url)}",
            f"access_key = {_toml(rancher.access_key)}",
            'secret_key = "********"',
        ]
        if rancher.secret_key_file:
            lines.append(f"secret_key_file = {_toml(rancher.secret_key_file)}")
        if rancher.ca_file:
            lines.append(f"ca_file = {_toml(rancher.ca_file)}")
        lines.append(f"create_missing = {_toml(rancher.create_missing)}")
    return "\n".join(lines) + "\n"


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def status(config: Config, args) -> int:
    document = _read_state(config.agent.state_dir)
    if document is None:
        return 1
    hosts = [registry.host for registry in config.registries]
    return _print_status(document, hosts, args.json)


def status_without_config(path: Path) -> int:
    """Show the state the agent wrote although the configuration file is invalid.

    The running service keeps its last good configuration after a rejected reload, so its
    state stays worth showing; the state directory is read from the file if it parses.
    """
    state_dir = AgentSettings().state_dir
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        state_dir = Path(data["agent"]["state_dir"])
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError):
        pass
    log.warning("showing the state in %s; `ecr-agent check-config` lists the errors", state_dir)
    document = _read_state(state_dir)
    if document is None:
        return 1
    return _print_status(document, list(document["registries"]), as_json=False)


def _read_state(state_dir: Path) -> dict | None:
    try:
        return read_state(state_dir)
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or error
        hint = "; has the agent run yet?" if isinstance(error, FileNotFoundError) else ""
        print(f"ecr-agent: no state in {state_dir}: {reason}{hint}", file=sys.stderr)
        return None


def _print_status(document: dict, hosts: list[str], as_json: bool) -> int:
    now = datetime.now(UTC)
    rows = []
    for host in hosts:
        entry = document["registries"].get(host) or {"host": host}
        entry["valid"] = _is_valid(entry.get("expires_at"), now)
        rows.append(entry)
    healthy = all(row["valid"] for row in rows)

    if as_json:
        output = dict(document, registries=rows, ok=healthy, checked_at=now.isoformat())
        print(json.dumps(output, indent=2))
    else:
        print(render_status(rows, document, now))
    return 0 if healthy else 1


def _is_valid(expires_at: str | None, now: datetime) -> bool:
    if not expires_at:
        return False
    return datetime.fromisoformat(expires_at) > now


def render_status(rows, document, now: datetime) -> str:
    lines = [f"state updated {document.get('updated_at')} by pid {document.get('pid')}"]
    for row in rows:
        expires = row.get("expires_at")
        if not expires:
            validity = "no credentials yet"
        elif row["valid"]:
            validity = f"valid until {expires}"
        else:
            validity = f"EXPIRED at {expires}"
        lines += ["", row["host"], f"  credentials:   {validity}"]
        lines.append(f"  last success:  {row.get('last_success') or 'never'}")
        lines.append(f"  next renewal:  {row.get('next_renewal') or 'not planned'}")
        if row.get("last_error"):
            lines.append(f"  last error:    {row.get('last_error_at')} {row['last_error']}")
        for name, target in sorted((row.get("targets") or {}).items()):
            result = "ok" if target.get("ok") else f"FAILED: {target.get('error')}"
            if target.get("warning"):
                result += f" (warning: {target['warning']})"
            lines.append(f"  {name}: {result}")
    return "\n".join(lines)
