"""Run the benchmarks and write BENCHMARKS.md.

    python -m benchmarks.main [--rounds N] [--renewals N] ...   (run.sh passes its arguments)

Brings up the testbed (benchmarks/testbed.py) in its own network namespace, runs
benchmarks/figures.py inside it and renders the results with benchmarks/report.py. The
testbed is torn down however the run ends.
"""

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import report
from benchmarks.figures import FIGURES
from benchmarks.measure import loadavg
from benchmarks.scenario import Scenario
from benchmarks.testbed import Testbed
from tests.aws_proxy import free_port
from tests.e2e.rig import ROOT, base_environment, missing_requirements

DEBIAN_PYTHON = "/usr/bin/python3"
DEPENDENCIES = ("boto3", "botocore", "docker", "requests", "urllib3", "sdnotify")

VERSIONS_SCRIPT = """\
import importlib.metadata, json, platform, sys
names = sys.argv[1:]
found = {"python": platform.python_version()}
for name in names:
    try:
        found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        found[name] = None
print(json.dumps(found))
"""


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="benchmarks/run.sh", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="timed runs of each variant")
    parser.add_argument("--idle-copies", type=int, default=10, help="idle processes per variant")
    parser.add_argument("--idle-seconds", type=float, default=120, help="idle window, s")
    parser.add_argument("--renewals", type=int, default=2000, help="renewals in figure 8")
    parser.add_argument("--scale", type=float, default=4320, help="time acceleration, fig. 7")
    parser.add_argument("--days", type=int, default=10, help="accelerated days in figure 7")
    parser.add_argument("--diy-days", type=int, default=2, help="days the DIY cron runs")
    parser.add_argument(
        "--region-delay", type=float, default=0.05, help="seconds added to each token call"
    )
    parser.add_argument("--only", nargs="*", choices=FIGURES, help="run only these figures")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--directory", type=Path, default=Path("/tmp/ecr-agent-bench"))
    parser.add_argument("--namespace", default="ecragent-bench")
    parser.add_argument("--debian-python", default=DEBIAN_PYTHON)
    parser.add_argument(
        "--moto-only",
        action="store_true",
        help="without the rig: moto and the emulator on 127.0.0.1, no Docker, no helper",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="write the report from the results and metadata of the last run in --directory",
    )
    return parser.parse_args(argv)


def dependency_sets(debian_python: str) -> dict[str, str]:
    """Return the interpreters of the dependency sets that this machine has."""
    sets = {"newest": sys.executable}
    check = [debian_python, "-c", "import boto3, docker, sdnotify"]
    if (
        os.access(debian_python, os.X_OK)
        and subprocess.run(check, capture_output=True).returncode == 0
    ):
        sets["debian12"] = debian_python
    return sets


def package_versions(python: str, names) -> dict:
    result = subprocess.run(
        [python, "-c", VERSIONS_SCRIPT, *names], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


def command_output(command) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unavailable ({error})"
    return (
        (result.stdout or result.stderr).strip().splitlines()[0] if result.returncode == 0 else ""
    )


def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "memory_gib": round(int(memory) / 1024 / 1024, 1),
        "os": command_output(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
    }


def tool_versions(aws: str) -> dict:
    def package(name):
        return command_output(["dpkg-query", "-W", "-f", "${Version}", name])

    return {
        "awscli": command_output([aws, "--version"]),
        "docker.io (CLI and dockerd)": package("docker.io"),
        "amazon-ecr-credential-helper": package("amazon-ecr-credential-helper"),
        "docker-registry": package("docker-registry"),
        "moto": package_versions(sys.executable, ["moto"])["moto"],
    }


def fresh_work(work: Path, scenario: Scenario) -> Path:
    """Empty the work directory and write the scenario the driver reads."""
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    path = work / "scenario.json"
    path.write_text(json.dumps(dict(vars(scenario), work=str(work)), indent=1))
    return path


def run_with_rig(args, work, pythons, aws, counts, results_path, figures) -> int:
    """Bring the testbed up, run the driver inside its namespace, take the testbed down."""
    testbed = Testbed(args.directory, args.namespace, sys.executable)
    try:
        print(f"benchmarks: bringing up the testbed in namespace {args.namespace}", flush=True)
        testbed.up()
        scenario = Scenario(
            work=work,
            ca_file=str(testbed.ca_file),
            docker_host=testbed.rig.docker_host,
            pythons=pythons,
            aws=aws,
            counts=counts,
        )
        scenario_path = fresh_work(work, scenario)
        command = testbed.rig.netns_command(
            sys.executable, "-m", "benchmarks.figures",
            "--scenario", scenario_path, "--output", results_path, *figures,
        )  # fmt: skip
        environment = base_environment(work, PYTHONPATH=str(ROOT))
        return subprocess.run(command, env=environment, cwd=ROOT, check=False).returncode
    finally:
        testbed.down(quiet=True)


def run_moto_only(args, work, pythons, aws, counts, results_path, figures) -> int:
    """Run the figures that need no rig against moto and the emulator on 127.0.0.1."""
    moto_port, api_port, control_port = free_port(), free_port(), free_port()
    environment = base_environment(work.parent, PYTHONPATH=str(ROOT))
    logs = args.directory / "moto-only-logs"
    logs.mkdir(parents=True, exist_ok=True)
    moto = emulator = None
    try:
        moto = start_logged(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
            environment,
            logs / "moto.log",
        )
        wait_for_port(moto_port, moto)
        emulator = start_logged(
            [sys.executable, "-m", "benchmarks.emulator",
             "--upstream", f"http://127.0.0.1:{moto_port}", "--address", "127.0.0.1",
             "--port", str(api_port), "--control", str(control_port)],
            environment,
            logs / "emulator.log",
        )  # fmt: skip
        wait_for_port(control_port, emulator)
        scenario = Scenario(
            work=work,
            ca_file="",
            docker_host=None,
            pythons=pythons,
            aws=aws,
            api_base=f"http://127.0.0.1:{api_port}",
            control_port=control_port,
            counts=counts,
        )
        scenario_path = fresh_work(work, scenario)
        command = [sys.executable, "-m", "benchmarks.figures", "--scenario", scenario_path]
        command += ["--output", results_path, *figures]
        return subprocess.run(command, env=environment, cwd=ROOT, check=False).returncode
    finally:
        for process in (emulator, moto):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=30)


def start_logged(command, environment, log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command, env=environment, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[2]} exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


def main(argv=None) -> int:
    args = parse_args(argv)
    results_path = args.directory / "results.json"
    meta_path = args.directory / "meta.json"
    if args.render_only:
        results = json.loads(results_path.read_text())
        meta = json.loads(meta_path.read_text())
        args.output.write_text(report.render(results, meta))
        print(f"benchmarks: wrote {args.output}")
        return 0

    reason = None if args.moto_only else missing_requirements()
    if reason:
        print(f"benchmarks: {reason}; --moto-only runs without it", file=sys.stderr)
        return 1

    started = time.time()
    aws = str(Path(sys.executable).parent / "aws")
    pythons = dependency_sets(args.debian_python)
    meta = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "loadavg_start": loadavg(),
        "machine": machine(),
        "sets": {name: package_versions(python, DEPENDENCIES) for name, python in pythons.items()},
        "pythons": pythons,
        "tools": tool_versions(aws),
        "arguments": " ".join(sys.argv[1:] if argv is None else argv),
    }
    counts = {
        "rounds": args.rounds,
        "idle_copies": args.idle_copies,
        "idle_seconds": args.idle_seconds,
        "renewals": args.renewals,
        "scale": args.scale,
        "days": args.days,
        "diy_days": args.diy_days,
        "region_delay": args.region_delay,
        "boto3_versions": {name: info["boto3"] for name, info in meta["sets"].items()},
    }

    work = args.directory / "work"
    results_path.unlink(missing_ok=True)
    figures = ["--only", *args.only] if args.only else []
    if args.moto_only:
        returncode = run_moto_only(args, work, pythons, aws, counts, results_path, figures)
    else:
        returncode = run_with_rig(args, work, pythons, aws, counts, results_path, figures)
    if returncode != 0:
        print(f"benchmarks: the driver failed; logs in {work / 'logs'}", file=sys.stderr)
        return returncode

    meta["moto_only"] = args.moto_only
    meta["loadavg_end"] = loadavg()
    meta["minutes"] = round((time.time() - started) / 60, 1)
    meta_path.write_text(json.dumps(meta, indent=1))
    results = json.loads(results_path.read_text())
    args.output.write_text(report.render(results, meta))
    print(f"benchmarks: wrote {args.output} in {meta['minutes']} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
