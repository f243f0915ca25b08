"""Smoke test of the benchmarks: benchmarks/run.sh with tiny counts, so that it cannot rot.

It checks that a run ends and writes a report with every figure and no secret; it
times nothing. With root and the rig's Debian packages the run uses the network
namespace testbed. Without them, the figures that need only moto run on 127.0.0.1.
"""

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.e2e.rig import missing_requirements

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "--rounds", "1", "--idle-copies", "1", "--idle-seconds", "1", "--renewals", "3",
    "--days", "1", "--diy-days", "1", "--scale", "43200",
]  # fmt: skip
MOTO_FIGURES = ("Figure 1:", "Figure 2:", "Figure 3:", "Figure 4:", "Figure 5:", "Figure 7:")
MOTO_FIGURES += ("Figure 8:",)
RIG_FIGURES = (*MOTO_FIGURES, "Figure 6:")
SECRETS = ("STAND-IN-AWS-SECRET-KEY", "auth-token")


@pytest.fixture
def short_directory():
    # Socket paths under the directory must stay below 108 bytes, which pytest's
    # tmp_path can exceed.
    directory = Path(tempfile.mkdtemp(prefix="ecrbench-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def run_bench(directory: Path, *extra: str) -> str:
    output = directory / "BENCHMARKS.md"
    environment = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(directory),
        "LANG": "C.UTF-8",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    command = ["bash", str(ROOT / "benchmarks" / "run.sh"), *TINY, *extra]
    command += ["--directory", str(directory / "bench"), "--output", str(output)]
    result = subprocess.run(
        command, env=environment, capture_output=True, text=True, timeout=1500, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return output.read_text()


def check_report(report: str, figures) -> None:
    for heading in figures:
        assert heading in report
    assert "| goal | case | measured | result |" in report
    for secret in SECRETS:
        assert secret not in report


def test_bench_entry_point(short_directory):
    """Run every figure with the rig where it can run, else the figures that need only moto."""
    if missing_requirements() is None:
        report = run_bench(short_directory, "--namespace", "ecragent-bsmoke")
        check_report(report, RIG_FIGURES)
        assert "DIY pipeline" in report
        assert "credential helper" in report
    else:
        report = run_bench(short_directory, "--moto-only")
        check_report(report, MOTO_FIGURES)
