"""Files ecr-agent must not write, through ``ecr-agent refresh``.

The cases are a full or read-only file system, users' homes with planted links, hard
links, FIFOs and foreign directories, and Docker config files that Docker could not read.
Each one fails with exit status 1 and a message that names the user and the path. Nothing
outside the user's own ``.docker`` changes. The root-only cases run in a private mount
namespace with their own tmpfs mounts and a password file bound over /etc/passwd.
"""

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from tests.faults.harness import HOST
from tests.faults.namespace import quote, read_only_etc, require_namespaces, run_script

OTHER_ENTRY = {"auth": base64.b64encode(b"user:STAND-IN-OTHER-PASSWORD").decode()}
ORIGINAL = json.dumps({"auths": {"registry.example.test": OTHER_ENTRY}, "detachKeys": "ctrl-q,q"})


def refresh_in_namespace(agent, setup: str, after: str = "") -> tuple[int, str]:
    """Run ``setup``, then ``ecr-agent refresh``, then ``after``, all in one namespace."""
    out, err, code = agent.dir / "refresh.out", agent.dir / "refresh.err", agent.dir / "rc"
    script = (
        setup
        + f"{quote(*agent.command('refresh'))} > {quote(out)} 2> {quote(err)}\n"
        + f"echo $? > {quote(code)}\n"
        + after
    )
    run_script(script, agent.env)
    return int(code.read_text()), err.read_text()


def test_full_disk_keeps_old_file(agent):
    require_namespaces()
    directory = agent.docker_config.parent
    directory.mkdir(mode=0o700)
    agent.write()
    saved, listing = agent.dir / "after.json", agent.dir / "listing"
    setup = (
        f"mount -t tmpfs -o size=64k,mode=0700 ecr-agent-test {quote(directory)} || exit 90\n"
        f"printf %s {quote(ORIGINAL)} > {quote(agent.docker_config)}\n"
        f"dd if=/dev/zero of={quote(directory / 'fill')} bs=4096 2>/dev/null\n"
    )
    after = (
        f"cat {quote(agent.docker_config)} > {quote(saved)}\n"
        f"ls -A {quote(directory)} > {quote(listing)}\n"
    )

    code, stderr = refresh_in_namespace(agent, setup, after)

    assert code == 1, stderr
    assert f"Docker config {agent.docker_config}: writing the file failed: " in stderr
    assert "No space left on device" in stderr
    assert saved.read_text() == ORIGINAL
    assert listing.read_text().split() == ["config.json", "fill"]
    row = agent.status_json()[1]["registries"][0]
    target = row["targets"][f"docker config {agent.docker_config}"]
    assert target["ok"] is False
    assert "No space left on device" in target["error"]


def test_read_only_file_system_keeps_old_file(agent):
    require_namespaces()
    directory = agent.docker_config.parent
    directory.mkdir(mode=0o700)
    agent.docker_config.write_text(ORIGINAL)
    agent.write()
    setup = (
        f"mount --bind {quote(directory)} {quote(directory)} || exit 90\n"
        f"mount -o remount,bind,ro {quote(directory)} || exit 90\n"
    )

    code, stderr = refresh_in_namespace(agent, setup)

    assert code == 1, stderr
    assert f"Docker config {agent.docker_config}: writing the file failed: " in stderr
    assert "Read-only file system" in stderr
    assert agent.docker_config.read_text() == ORIGINAL
    assert os.listdir(directory) == ["config.json"]


# -- users' homes --------------------------------------------------------------------------

USERS = {  # name: uid; every user's group id is its uid
    "alice": 3101,
    "nohome": 3102,
    "linkother": 3103,
    "linketc": 3104,
    "filelink": 3105,
    "hardlink": 3106,
    "fifo": 3107,
    "dockerfile": 3108,
    "victim": 3109,
    "wrongowner": 3110,
}


def make_homes(base: Path) -> Path:
    """Create the users' homes as they planted them and return the password file."""
    homes = base / "home"
    lines = [Path("/etc/passwd").read_text().rstrip("\n")]
    for name, uid in USERS.items():
        home = homes / ("missing" if name == "nohome" else name)
        lines.append(f"{name}:x:{uid}:{uid}::{home}:/bin/sh")
        if name == "nohome":
            continue
        home.mkdir(parents=True)
        os.chown(home, uid, uid)

    def docker_dir(name, owner=None):
        directory = homes / name / ".docker"
        directory.mkdir(mode=0o700)
        uid = USERS[name] if owner is None else owner
        os.chown(directory, uid, uid)
        return directory

    victim = docker_dir("victim")
    (victim / "config.json").write_text(ORIGINAL)
    (homes / "linkother" / ".docker").symlink_to(victim)
    (homes / "linketc" / ".docker").symlink_to("/etc")
    target = base / "root-owned.json"
    target.write_text(ORIGINAL)
    (docker_dir("filelink") / "config.json").symlink_to(target)
    notes = homes / "hardlink" / "notes.json"
    notes.write_text(ORIGINAL)
    os.chown(notes, USERS["hardlink"], USERS["hardlink"])
    os.link(notes, docker_dir("hardlink") / "config.json")
    os.mkfifo(docker_dir("fifo") / "config.json", 0o600)
    (homes / "dockerfile" / ".docker").write_text("not a directory")
    docker_dir("wrongowner", owner=0)

    passwd = base / "passwd"
    passwd.write_text("\n".join(lines) + "\n")
    return passwd


def snapshot(root: Path) -> dict:
    """Return every entry under ``root`` with its type, owner, mode, times and content."""
    entries = {}
    for directory, names, files in os.walk(root):
        for name in names + files:
            path = Path(directory) / name
            status = os.lstat(path)
            content = None
            if stat.S_ISREG(status.st_mode):
                content = path.read_bytes()
            elif stat.S_ISLNK(status.st_mode):
                content = os.readlink(path)
            entries[str(path.relative_to(root))] = (
                stat.S_IFMT(status.st_mode),
                stat.S_IMODE(status.st_mode),
                status.st_uid,
                status.st_nlink,
                status.st_mtime_ns,
                content,
            )
    return entries


REFUSALS = {
    "ghost": "~ghost/.docker/config.json: user ghost does not exist; create it",
    "nohome": "home directory {home}/missing of user nohome does not exist",
    "linkother": "{home}/linkother/.docker of user linkother is a symbolic link",
    "linketc": "{home}/linketc/.docker of user linketc is a symbolic link",
    "filelink": "{home}/filelink/.docker/config.json: the file is a symbolic link, but a "
    "Docker config must be a regular file; user filelink must replace it",
    "hardlink": "{home}/hardlink/.docker/config.json: the file has 2 hard links; ecr-agent "
    "replaces only a file of user hardlink with a single link",
    "fifo": "{home}/fifo/.docker/config.json: the file is a named pipe (FIFO), but a Docker "
    "config must be a regular file; user fifo must replace it",
    "dockerfile": "{home}/dockerfile/.docker of user dockerfile is a regular file",
    "wrongowner": "{home}/wrongowner/.docker is owned by uid 0, not by user wrongowner "
    "(uid 3110); run: chown wrongowner",
}


@pytest.fixture(scope="module")
def user_runs(moto_server, tmp_path_factory):
    """Run ``refresh`` once per user in one namespace; return exit codes, logs, snapshots."""
    from tests.aws_proxy import AwsProxy
    from tests.faults.harness import AgentUnderTest

    require_namespaces()
    base = tmp_path_factory.mktemp("users")
    passwd = make_homes(base)
    before = snapshot(base / "home")
    proxy = AwsProxy(moto_server.url, expires_in=3600).start()
    agents = {}
    script = read_only_etc() + f"mount --bind {quote(passwd)} /etc/passwd || exit 91\n"
    for user in ["alice", *REFUSALS]:
        agent = AgentUnderTest(base / "runs" / user, proxy.url)
        agent.write(docker={"config_files": [], "users": [user]})
        out, err = agent.dir / "refresh.out", agent.dir / "refresh.err"
        script += f"{quote(*agent.command('refresh'))} > {quote(out)} 2> {quote(err)}\n"
        script += f"echo $? > {quote(agent.dir / 'rc')}\n"
        agents[user] = agent
    try:
        run_script(script, agents["alice"].env)
    finally:
        proxy.stop()

    results = {
        user: (int((agent.dir / "rc").read_text()), (agent.dir / "refresh.err").read_text())
        for user, agent in agents.items()
    }
    return base, before, snapshot(base / "home"), results


def test_user_file_written_for_alice(user_runs):
    base, _, after, results = user_runs
    code, stderr = results["alice"]
    written = base / "home" / "alice" / ".docker" / "config.json"

    assert code == 0, stderr
    assert HOST in json.loads(written.read_text())["auths"]
    assert after["alice/.docker"][2] == USERS["alice"]
    assert after["alice/.docker"][1] == 0o700
    assert after["alice/.docker/config.json"][2] == USERS["alice"]
    assert after["alice/.docker/config.json"][1] == 0o600


@pytest.mark.parametrize("user", sorted(REFUSALS))
def test_planted_home_refused(user_runs, user):
    base, _, _, results = user_runs
    code, stderr = results[user]
    expected = REFUSALS[user].format(home=base / "home")

    assert code == 1, stderr
    assert expected in stderr
    assert "<3>Docker config " in stderr


def test_refusals_touch_nothing(user_runs):
    """Only alice's .docker changed, so no refusal touched any other file."""
    _, before, after, _ = user_runs
    changed = {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}

    # alice's home changed only in its link count and times, because .docker is new.
    assert changed == {"alice", "alice/.docker", "alice/.docker/config.json"}
    assert before["alice"][:3] == after["alice"][:3]
    assert not Path("/etc/config.json").exists()


# -- files that are not Docker config files --------------------------------------------


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{not json", "invalid JSON at line 1 column 2"),
        (b'{"auths": []}', "auths is an array, but Docker expects an object"),
        (b'["auths"]', "the file holds an array, but Docker expects a JSON object"),
        (b'{"auths": {}}\xff', "the file is not UTF-8 text"),
        (
            b'{"pad": "' + b"x" * (4 * 1024 * 1024) + b'"}',
            "the file has 4194315 bytes, more than the 4194304 accepted",
        ),
    ],
    ids=["invalid-json", "auths-array", "top-level-array", "not-utf8", "over-4-mib"],
)
def test_unusable_config_untouched(agent, content, reason):
    agent.docker_config.parent.mkdir(mode=0o700)
    agent.docker_config.write_bytes(content)
    os.utime(agent.docker_config, ns=(1_000_000_000, 1_000_000_000))
    agent.write()

    result = agent.run("refresh")

    assert result.returncode == 1
    assert f"Docker config {agent.docker_config}: {reason}" in result.stderr
    assert agent.docker_config.read_bytes() == content
    assert agent.docker_config.stat().st_mtime_ns == 1_000_000_000
    assert os.listdir(agent.docker_config.parent) == ["config.json"]


def test_admin_fifo_refused_without_blocking(agent):
    agent.docker_config.parent.mkdir(mode=0o700)
    os.mkfifo(agent.docker_config, 0o600)
    agent.write()

    result = agent.run("refresh", timeout=60)

    assert result.returncode == 1
    assert f"Docker config {agent.docker_config}: the file is a named pipe (FIFO)" in result.stderr
    assert stat.S_ISFIFO(os.lstat(agent.docker_config).st_mode)
