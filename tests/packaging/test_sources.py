"""Checks of the packaging sources that need no root and no build tools: versions, the
build scripts' version check, and the man pages against the command line and config."""

import importlib.util
import re
import shutil
import subprocess

import pytest

from ecr_agent import config as agent_config
from tests.conftest import agent_command, agent_env
from tests.packaging.conftest import ROOT, upstream_version

MAN = ROOT / "packaging/man"
COMMAND_PAGE = MAN / "ecr-agent.1.md"
CONFIG_PAGE = MAN / "ecr-agent.toml.5.md"


def load_mkman():
    spec = importlib.util.spec_from_file_location("mkman", MAN / "mkman.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_debian_changelog_matches_version():
    first_line = (ROOT / "packaging/debian/changelog").read_text().splitlines()[0]
    match = re.match(r"^ecr-agent \((?P<upstream>[^)-]+)-(?P<revision>[^)]+)\) ", first_line)
    assert match, first_line
    assert match["upstream"] == upstream_version()


def test_rpm_spec_matches_version():
    spec = (ROOT / "packaging/rpm/ecr-agent.spec").read_text()
    assert re.search(r"^Version:\s+(\S+)$", spec, re.M)[1] == upstream_version()
    changelog = spec.split("%changelog\n", 1)[1].splitlines()[0]
    assert re.search(rf" - {re.escape(upstream_version())}-\d+$", changelog), changelog


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("build-deb.sh", "add an entry for 9.9.9-1"),
        ("build-rpm.sh", "update Version, Release and %changelog"),
    ],
)
def test_build_rejects_other_version(tmp_path, script, message):
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "packaging", tree / "packaging")
    (tree / "ecr_agent").mkdir()
    (tree / "ecr_agent/__init__.py").write_text('__version__ = "9.9.9"\n')

    env = {"PATH": "/usr/bin:/bin", "ECR_AGENT_BUILD_DIR": str(tmp_path / "build")}
    result = subprocess.run(
        ["bash", str(tree / "packaging" / script)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 1
    assert "9.9.9" in result.stderr
    assert message in result.stderr
    assert not (tmp_path / "build").exists()


@pytest.mark.parametrize(
    ("markup", "roff"),
    [
        ("plain text", "plain text"),
        ("**bold** and *italic*", "\\fBbold\\fR and \\fIitalic\\fR"),
        ("`literal`", "\\fBliteral\\fR"),
        ("--config and a-b", "\\-\\-config and a\\-b"),
        ("a * (b - c)", "a * (b \\- c)"),
        ("*x* * *y*", "\\fIx\\fR * \\fIy\\fR"),
        (".starts with a dot", "\\&.starts with a dot"),
        ("back\\slash", "back\\eslash"),
        ('it\'s "quoted"', "it\\(aqs \\(dqquoted\\(dq"),
    ],
)
def test_mkman_inline_markup(markup, roff):
    assert load_mkman().inline(markup) == roff


def test_mkman_rejects_missing_title():
    with pytest.raises(ValueError, match="first line"):
        load_mkman().convert("# NAME\nx - y\n", "1.0", "2026-01-01")


def test_man_pages_render_without_warnings(tmp_path):
    if shutil.which("man") is None:
        pytest.skip("needs man (Debian package man-db)")
    mkman = load_mkman()
    mkman.main(["--outdir", str(tmp_path), "--version", "1.0", str(COMMAND_PAGE), str(CONFIG_PAGE)])

    for page in ("ecr-agent.1", "ecr-agent.toml.5"):
        command = ["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", str(tmp_path / page)]
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "MANWIDTH": "80"}
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stderr == "", page
        assert (tmp_path / page).read_text().startswith(f'.TH "{page.rsplit(".", 1)[0].upper()}"')


def test_config_page_names_every_key():
    page = CONFIG_PAGE.read_text()
    for table, keys in agent_config._TABLE_KEYS.items():
        assert f"# [{table}]" in page, table
        for key in keys:
            assert f"**{key}**" in page, f"{table}.{key}"
    assert "# [[registry]]" in page
    for key in agent_config._REGISTRY_KEYS:
        assert f"**{key}**" in page, f"registry.{key}"


def test_command_page_names_every_command(tmp_path):
    page = COMMAND_PAGE.read_text()
    env = agent_env(tmp_path)
    top = subprocess.run(
        agent_command("--help"), env=env, capture_output=True, text=True, check=True
    ).stdout
    section = top.split("COMMAND\n", 1)[1].split("\n\n", 1)[0]
    commands = re.findall(r"^    (\S+)", section, re.M)
    assert "run" in commands

    for option in re.findall(r"\[(--[a-z-]+)", top.splitlines()[0]):
        assert f"**{option}**" in page, option
    for command in commands:
        assert f"**{command}**" in page, command
        usage = subprocess.run(
            agent_command(command, "--help"), env=env, capture_output=True, text=True, check=True
        ).stdout
        for option in set(re.findall(r"\[(--[a-z-]+)\]", usage)) - {"--help"}:
            assert f"**{option}**" in page, f"{command} {option}"
