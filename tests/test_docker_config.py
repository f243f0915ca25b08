"""Tests of the Docker config file target against real files in temporary directories."""

import base64
import json
import logging
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ecr_agent import docker_config, safe_files
from ecr_agent.config import DockerSettings
from ecr_agent.credentials import Credentials
from ecr_agent.docker_config import DockerConfigTarget, convert_to_hostname

HOST = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
OTHER_HOST = "210987654321.dkr.ecr.eu-west-1.amazonaws.com"
PASSWORD = "STAND-IN-SECRET-ecr-password-0001"
OTHER_PASSWORD = "STAND-IN-SECRET-ecr-password-0002"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def make_credentials(password=PASSWORD):
    return Credentials("AWS", password, NOW, NOW + timedelta(hours=12))


CREDENTIALS = make_credentials()
AUTH = CREDENTIALS.docker_auth()
SECRETS = [PASSWORD, OTHER_PASSWORD, AUTH, make_credentials(OTHER_PASSWORD).docker_auth()]


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog):
    """Capture every level and check afterwards that no stand-in secret was logged."""
    caplog.set_level(logging.DEBUG)
    yield caplog
    for secret in SECRETS:
        assert secret not in caplog.text


def publish(settings, hosts=None, **options):
    """Publish to ``settings`` and check that no Outcome carries a stand-in secret."""
    target = DockerConfigTarget(settings, **options)
    outcomes = target.publish({HOST: CREDENTIALS} if hosts is None else hosts)
    target.close()
    for outcome in outcomes:
        for secret in SECRETS:
            assert secret not in repr(outcome)
    return outcomes


def publish_file(path, hosts=None, **options):
    outcomes = publish(DockerSettings(config_files=(path,)), hosts, **options)
    assert len(outcomes) == 1
    return outcomes[0]


def read_json(path):
    return json.loads(Path(path).read_text())


def write_json(path, document):
    Path(path).write_text(json.dumps(document, indent="\t"))


# --- files named by the administrator -----------------------------------------------


def test_new_file_mode_0600(tmp_path):
    path = tmp_path / "missing" / "nested" / "config.json"

    outcome = publish_file(path)

    assert outcome.ok
    assert outcome.warning is None
    assert outcome.target == f"docker config {path}"
    assert outcome.host is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    assert read_json(path) == {"auths": {HOST: {"auth": AUTH}}}


def test_written_file_tab_indented(tmp_path):
    path = tmp_path / "config.json"

    publish_file(path)

    text = path.read_text()
    assert text == json.dumps({"auths": {HOST: {"auth": AUTH}}}, indent="\t")
    assert "\n\t\t" in text


def test_auth_value_decodes_to_user_password(tmp_path):
    path = tmp_path / "config.json"

    publish_file(path)

    auth = read_json(path)["auths"][HOST]["auth"]
    assert base64.b64decode(auth).decode() == f"AWS:{PASSWORD}"


def test_other_keys_and_entries_kept(tmp_path):
    path = tmp_path / "config.json"
    original = {
        "zz-unknown": {"nested": [1, 2.5, None, True]},
        "auths": {
            "registry.example.org": {"auth": "dXNlcjpwYXNz"},
            HOST: {"auth": "b2xkOm9sZA=="},
            "ghcr.io": {"identitytoken": "stand-in-identity-token"},
        },
        "credHelpers": {"gcr.io": "gcloud"},
        "proxies": {"default": {"httpProxy": "http://127.0.0.1:3128"}},
        "HttpHeaders": {"X-Meta": "kept"},
        "psFormat": "table {{.ID}}\\t{{.Names}}",
        "aa-unicode": "Grüße",
    }
    write_json(path, original)

    outcome = publish_file(path, {HOST: CREDENTIALS, OTHER_HOST: make_credentials(OTHER_PASSWORD)})

    assert outcome.ok
    written = read_json(path)
    assert list(written) == list(original)
    assert list(written["auths"]) == ["registry.example.org", HOST, "ghcr.io", OTHER_HOST]
    for key in original:
        if key != "auths":
            assert written[key] == original[key]
    assert written["auths"]["registry.example.org"] == {"auth": "dXNlcjpwYXNz"}
    assert written["auths"]["ghcr.io"] == {"identitytoken": "stand-in-identity-token"}
    assert written["auths"][HOST] == {"auth": AUTH}
    other_auth = make_credentials(OTHER_PASSWORD).docker_auth()
    assert written["auths"][OTHER_HOST] == {"auth": other_auth}
    assert "Grüße" in path.read_text()


def test_auths_added_to_file_without_it(tmp_path):
    path = tmp_path / "config.json"
    write_json(path, {"detachKeys": "ctrl-x"})

    publish_file(path)

    assert read_json(path) == {"detachKeys": "ctrl-x", "auths": {HOST: {"auth": AUTH}}}


def test_existing_entry_replaced_whole(tmp_path):
    path = tmp_path / "config.json"
    entry = {"auth": "b2xkOm9sZA==", "email": "old@example.org", "identitytoken": "stale"}
    write_json(path, {"auths": {HOST: entry}})

    publish_file(path)

    assert read_json(path)["auths"][HOST] == {"auth": AUTH}


def test_existing_mode_kept(tmp_path):
    path = tmp_path / "config.json"
    write_json(path, {"auths": {}})
    path.chmod(0o640)

    publish_file(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_existing_owner_kept(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to give the file another owner")
    path = tmp_path / "config.json"
    write_json(path, {"auths": {}})
    os.chown(path, 4321, 8765)
    path.chmod(0o604)

    publish_file(path)

    status = path.stat()
    assert (status.st_uid, status.st_gid) == (4321, 8765)
    assert stat.S_IMODE(status.st_mode) == 0o604
    assert read_json(path)["auths"][HOST] == {"auth": AUTH}


def test_url_keyed_duplicates_replaced(tmp_path):
    path = tmp_path / "config.json"
    auths = {
        "registry.example.org": {"auth": "dXNlcjpwYXNz"},
        f"https://{HOST}": {"auth": "b2xkOm9sZA=="},
        "quay.io": {"auth": "cXVheTpxdWF5"},
        f"https://{HOST}/": {"auth": "b2xkOm9sZA=="},
        f"http://{HOST}/v2/": {"auth": "b2xkOm9sZA=="},
        f"https://{HOST}:443": {"auth": "cG9ydDpwb3J0"},
    }
    write_json(path, {"auths": auths})

    publish_file(path)

    written = read_json(path)["auths"]
    expected_keys = ["registry.example.org", HOST, "quay.io", f"https://{HOST}:443"]
    assert list(written) == expected_keys
    assert written[HOST] == {"auth": AUTH}
    assert written[f"https://{HOST}:443"] == {"auth": "cG9ydDpwb3J0"}


@pytest.mark.parametrize(
    ("key", "host"),
    [
        (HOST, HOST),
        (f"https://{HOST}", HOST),
        (f"https://{HOST}/", HOST),
        (f"http://{HOST}/v2/", HOST),
        (f"{HOST}/v1/", HOST),
        ("https://index.docker.io/v1/", "index.docker.io"),
        ("https://localhost:5000/", "localhost:5000"),
        ("https://user@registry.example.org/", "registry.example.org"),
        ("https://[::1]:5000/v2/", "[::1]:5000"),
    ],
)
def test_convert_to_hostname(key, host):
    assert convert_to_hostname(key) == host


def test_leftover_temp_files_removed(tmp_path):
    path = tmp_path / "config.json"
    write_json(path, {"auths": {}})
    leftover = tmp_path / ".config.json.ecr-agent-0123456789abcdef.tmp"
    leftover.write_text('{"auths": {}}')
    unrelated = [tmp_path / ".config.json.other.tmp", tmp_path / "config.json.ecr-agent-1.tmp"]
    for other in unrelated:
        other.write_text("kept")

    outcome = publish_file(path)

    assert outcome.ok
    assert not leftover.exists()
    for other in unrelated:
        assert other.read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["config.json", ".config.json.other.tmp", "config.json.ecr-agent-1.tmp"]
    )


def test_leftover_link_removed_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("victim")
    docker_dir = tmp_path / "docker"
    docker_dir.mkdir()
    leftover = docker_dir / ".config.json.ecr-agent-00ff.tmp"
    leftover.symlink_to(victim)

    publish_file(docker_dir / "config.json")

    assert not leftover.is_symlink()
    assert victim.read_text() == "victim"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"auths": {', "invalid JSON at line 1"),
        (b"{'auths': {}}", "invalid JSON at line 1 column 2"),
        (b'{"auths": {}} trailing', "invalid JSON"),
        (b"[1, 2]", "holds an array, but Docker expects a JSON object"),
        (b'"text"', "holds a string"),
        (b"null", "holds null"),
        (b"42", "holds a number"),
        (b'{"auths": []}', "auths is an array, but Docker expects an object"),
        (b'{"auths": "x"}', "auths is a string"),
        (b'{"credHelpers": ["ecr-login"]}', "credHelpers is an array"),
        (b'{"credHelpers": {"h": 1}}', "credHelpers['h'] is a number"),
        (b'{"credsStore": true}', "credsStore is a boolean, but Docker expects a string"),
        (b"\xff\xfe{}", "not UTF-8 text"),
    ],
)
def test_unparsable_file_kept(tmp_path, content, problem):
    path = tmp_path / "config.json"
    path.write_bytes(content)

    outcome = publish_file(path)

    assert not outcome.ok
    assert str(path) in outcome.error
    assert problem in outcome.error
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


@pytest.mark.parametrize("content", [b"", b"  \n\t"])
def test_empty_file_counts_as_empty_object(tmp_path, content):
    path = tmp_path / "config.json"
    path.write_bytes(content)
    path.chmod(0o600)

    outcome = publish_file(path)

    assert outcome.ok
    assert read_json(path) == {"auths": {HOST: {"auth": AUTH}}}


def test_null_auths_accepted(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"auths": null, "credsStore": null}')

    outcome = publish_file(path)

    assert outcome.ok
    assert read_json(path) == {"auths": {HOST: {"auth": AUTH}}, "credsStore": None}


def test_symlinked_config_file_followed(tmp_path):
    real = tmp_path / "real" / "config.json"
    real.parent.mkdir()
    write_json(real, {"auths": {"quay.io": {"auth": "cXVheTpxdWF5"}}})
    real.chmod(0o640)
    link = tmp_path / "link" / "config.json"
    link.parent.mkdir()
    link.symlink_to("../real/config.json")

    outcome = publish_file(link)

    assert outcome.ok
    assert outcome.target == f"docker config {link}"
    assert link.is_symlink()
    assert os.readlink(link) == "../real/config.json"
    assert read_json(real)["auths"] == {"quay.io": {"auth": "cXVheTpxdWF5"}, HOST: {"auth": AUTH}}
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert sorted(p.name for p in link.parent.iterdir()) == ["config.json"]


def test_dangling_symlink_target_created(tmp_path):
    real = tmp_path / "real" / "config.json"
    link = tmp_path / "config.json"
    link.symlink_to(real)

    outcome = publish_file(link)

    assert outcome.ok
    assert link.is_symlink()
    assert read_json(real) == {"auths": {HOST: {"auth": AUTH}}}
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert stat.S_IMODE(real.parent.stat().st_mode) == 0o700


def run_with_hang_guard(function):
    """Run ``function`` in a thread; fail instead of hanging the test run if it blocks."""
    results = []
    thread = threading.Thread(target=lambda: results.append(function()), daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "publish blocked"
    return results[0]


def test_fifo_rejected_without_blocking(tmp_path):
    path = tmp_path / "config.json"
    os.mkfifo(path)

    outcome = run_with_hang_guard(lambda: publish_file(path))

    assert not outcome.ok
    assert "named pipe (FIFO)" in outcome.error
    assert stat.S_ISFIFO(path.lstat().st_mode)


def test_directory_rejected(tmp_path):
    path = tmp_path / "config.json"
    path.mkdir()

    outcome = publish_file(path)

    assert not outcome.ok
    assert "is a directory" in outcome.error
    assert list(path.iterdir()) == []


def test_link_to_device_rejected(tmp_path):
    path = tmp_path / "config.json"
    path.symlink_to("/dev/null")

    outcome = publish_file(path)

    assert not outcome.ok
    assert "character device" in outcome.error
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_huge_file_rejected(tmp_path):
    path = tmp_path / "config.json"
    with open(path, "wb") as file:
        file.truncate(safe_files.MAX_FILE_BYTES + 1)

    outcome = publish_file(path)

    assert not outcome.ok
    assert f"more than the {safe_files.MAX_FILE_BYTES} accepted" in outcome.error
    assert path.stat().st_size == safe_files.MAX_FILE_BYTES + 1


def test_failed_rename_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    original = b'{\n\t"auths": {\n\t\t"quay.io": {}\n\t}\n}'
    path.write_bytes(original)

    def failing_replace(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safe_files.os, "replace", failing_replace)
    outcome = publish_file(path)
    monkeypatch.undo()

    assert not outcome.ok
    assert "No space left on device" in outcome.error
    assert str(path) in outcome.error
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_interrupted_write_cleaned_next_time(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    write_json(path, {"auths": {}})
    path.chmod(0o600)
    original = path.read_bytes()

    def interrupted_replace(*args, **kwargs):
        raise KeyboardInterrupt

    def keep_temp(*args, **kwargs):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(safe_files.os, "replace", interrupted_replace)
    monkeypatch.setattr(safe_files.os, "unlink", keep_temp)
    with pytest.raises(KeyboardInterrupt):
        DockerConfigTarget(DockerSettings(config_files=(path,))).publish({HOST: CREDENTIALS})
    monkeypatch.undo()
    leftovers = [p for p in tmp_path.iterdir() if p.name != "config.json"]

    assert path.read_bytes() == original
    assert len(leftovers) == 1
    assert leftovers[0].name.startswith(".config.json.ecr-agent-")
    assert stat.S_IMODE(leftovers[0].stat().st_mode) == 0o600

    outcome = publish_file(path)

    assert outcome.ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_one_failure_does_not_stop_others(tmp_path):
    bad = tmp_path / "bad" / "config.json"
    bad.parent.mkdir()
    bad.write_text("{broken")
    good = tmp_path / "good" / "config.json"

    outcomes = publish(DockerSettings(config_files=(bad, good)))

    assert [outcome.ok for outcome in outcomes] == [False, True]
    assert outcomes[0].target == f"docker config {bad}"
    assert outcomes[1].target == f"docker config {good}"
    assert read_json(good)["auths"][HOST] == {"auth": AUTH}


def test_unchanged_file_not_rewritten(tmp_path):
    path = tmp_path / "config.json"
    publish_file(path)
    inode = path.stat().st_ino

    outcome = publish_file(path)

    assert outcome.ok
    assert path.stat().st_ino == inode


def test_errors_logged_with_path(tmp_path, caplog):
    path = tmp_path / "config.json"
    path.write_text("[]")

    publish_file(path)

    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert str(path) in errors[0].getMessage()


def test_docker_sdk_accepts_written_file(tmp_path):
    auth = pytest.importorskip("docker.auth")
    path = tmp_path / "config.json"
    write_json(path, {"auths": {f"https://{HOST}/": {"auth": "b2xkOm9sZA=="}}, "x": 1})

    publish_file(path)
    loaded = auth.load_config(str(path))

    assert loaded.auths[HOST]["username"] == "AWS"
    assert loaded.auths[HOST]["password"] == PASSWORD
    resolved = auth.resolve_authconfig(loaded, HOST)
    assert resolved["password"] == PASSWORD


# --- credential helpers ---------------------------------------------------------------


@pytest.fixture
def helper_dir():
    """A directory on PATH for stand-in credential helpers, readable by every user."""
    directory = Path(tempfile.mkdtemp(prefix="ecr-agent-helpers-"))
    directory.chmod(0o755)
    records = directory / "records"
    records.mkdir()
    records.chmod(0o777)
    yield directory
    shutil.rmtree(directory)


def install_helper(directory, name, script):
    program = directory / f"docker-credential-{name}"
    program.write_text("#!/bin/sh\n" + script)
    program.chmod(0o755)
    return program


RECORDING_HELPER = """\
[ "$1" = store ] || exit 3
cat > "{records}/stored-$(id -u).json"
echo ok
"""


def add_to_path(monkeypatch, directory):
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")


def test_creds_store_helper_receives_secret(tmp_path, helper_dir, monkeypatch):
    install_helper(helper_dir, "standin", RECORDING_HELPER.format(records=helper_dir / "records"))
    add_to_path(monkeypatch, helper_dir)
    path = tmp_path / "config.json"
    original = {"credsStore": "standin", "auths": {f"https://{HOST}": {"auth": "b2xkOm9sZA=="}}}
    write_json(path, original)

    outcome = publish_file(path)

    assert outcome.ok
    assert outcome.warning is None
    stored = json.loads((helper_dir / "records" / f"stored-{os.geteuid()}.json").read_text())
    assert stored == {"ServerURL": HOST, "Username": "AWS", "Secret": PASSWORD}
    written = read_json(path)
    assert written == {"credsStore": "standin", "auths": {HOST: {}}}
    assert PASSWORD not in path.read_text()
    assert AUTH not in path.read_text()


def test_cred_helper_preferred_over_creds_store(tmp_path, helper_dir, monkeypatch):
    install_helper(helper_dir, "standin", RECORDING_HELPER.format(records=helper_dir / "records"))
    install_helper(helper_dir, "never", "exit 1\n")
    add_to_path(monkeypatch, helper_dir)
    path = tmp_path / "config.json"
    write_json(path, {"credsStore": "never", "credHelpers": {HOST: "standin"}})

    outcome = publish_file(path)

    assert outcome.warning is None
    assert (helper_dir / "records" / f"stored-{os.geteuid()}.json").exists()
    assert read_json(path)["auths"] == {HOST: {}}


def test_empty_cred_helper_selects_file(tmp_path, helper_dir, monkeypatch):
    install_helper(helper_dir, "standin", RECORDING_HELPER.format(records=helper_dir / "records"))
    add_to_path(monkeypatch, helper_dir)
    path = tmp_path / "config.json"
    write_json(path, {"credsStore": "standin", "credHelpers": {HOST: ""}})

    outcome = publish_file(path)

    assert outcome.ok
    assert outcome.warning is None
    assert list((helper_dir / "records").iterdir()) == []
    assert read_json(path)["auths"] == {HOST: {"auth": AUTH}}


def test_cred_helper_for_other_host_ignored(tmp_path):
    path = tmp_path / "config.json"
    write_json(path, {"credHelpers": {OTHER_HOST: "ecr-login"}})

    outcome = publish_file(path)

    assert outcome.warning is None
    assert read_json(path)["auths"] == {HOST: {"auth": AUTH}}


def test_ecr_login_helper_warns(tmp_path, caplog):
    path = tmp_path / "config.json"
    original = {"credHelpers": {HOST: "ecr-login", "public.ecr.aws": "ecr-login"}}
    write_json(path, original)

    outcome = publish_file(path)

    assert outcome.ok
    assert outcome.warning is not None
    assert f"Docker will not use the auths entry for {HOST}" in outcome.warning
    assert "ecr-login" in outcome.warning
    written = read_json(path)
    assert written["credHelpers"] == original["credHelpers"]
    assert written["auths"] == {HOST: {"auth": AUTH}}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [outcome.warning]


def test_missing_helper_warns(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    path = tmp_path / "config.json"
    write_json(path, {"credsStore": "standin-absent"})

    outcome = publish_file(path)

    assert outcome.ok
    assert "docker-credential-standin-absent" in outcome.warning
    assert "not found on PATH" in outcome.warning
    written = read_json(path)
    assert written == {"credsStore": "standin-absent", "auths": {HOST: {"auth": AUTH}}}


def test_failing_helper_output_redacted(tmp_path, helper_dir, monkeypatch):
    install_helper(helper_dir, "echoing", 'echo "cannot store: $(cat)"; exit 1\n')
    add_to_path(monkeypatch, helper_dir)
    path = tmp_path / "config.json"
    write_json(path, {"credsStore": "echoing"})

    outcome = publish_file(path)

    assert outcome.ok
    assert "docker-credential-echoing store failed with exit status 1" in outcome.warning
    assert '"Secret": "***"' in outcome.warning
    assert read_json(path)["auths"] == {HOST: {"auth": AUTH}}


def test_hanging_helper_times_out(tmp_path, helper_dir, monkeypatch):
    install_helper(helper_dir, "hanging", "sleep 600 & wait\n")
    add_to_path(monkeypatch, helper_dir)
    path = tmp_path / "config.json"
    write_json(path, {"credsStore": "hanging"})

    outcome = run_with_hang_guard(lambda: publish_file(path, helper_timeout=0.5))

    assert outcome.ok
    assert "docker-credential-hanging store timed out after 0.5 s" in outcome.warning
    assert read_json(path)["auths"] == {HOST: {"auth": AUTH}}


def test_helper_start_failure_warns(tmp_path, helper_dir, monkeypatch):
    program = helper_dir / "docker-credential-broken"
    program.write_text("#!/nonexistent/interpreter\n")
    program.chmod(0o755)
    add_to_path(monkeypatch, helper_dir)
    path = tmp_path / "config.json"
    write_json(path, {"credsStore": "broken"})

    outcome = publish_file(path)

    assert outcome.ok
    assert "docker-credential-broken could not be started" in outcome.warning
    assert read_json(path)["auths"] == {HOST: {"auth": AUTH}}


def test_helper_name_with_slash_rejected(tmp_path):
    path = tmp_path / "config.json"
    write_json(path, {"credsStore": "../../bin/sh"})

    outcome = publish_file(path)

    assert "is invalid" in outcome.warning
    assert read_json(path)["auths"] == {HOST: {"auth": AUTH}}


# --- users' own files, written as root -----------------------------------------------


def run_account_command(command):
    """Run useradd or userdel, retrying while another process holds the passwd lock."""
    for _ in range(50):
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode == 0:
            return
        if "lock" not in result.stderr:
            break
        time.sleep(0.2)
    raise RuntimeError(f"{command[0]} failed: {result.stderr.strip()}")


@pytest.fixture(scope="module")
def accounts():
    """Two throw-away users with homes under one world-readable temporary directory."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create users and write their files")
    if shutil.which("useradd") is None:
        pytest.skip("needs useradd (Debian package passwd)")

    base = Path(tempfile.mkdtemp(prefix="ecr-agent-homes-"))
    base.chmod(0o755)
    names = [f"ecrtest{secrets.token_hex(4)}" for _ in range(2)]
    created = []
    try:
        for name in names:
            command = ["useradd", "--home-dir", str(base / name), "--no-create-home"]
            command += ["--user-group", "--shell", "/usr/sbin/nologin", name]
            run_account_command(command)
            created.append(name)
        yield base, names
    finally:
        for name in created:
            run_account_command(["userdel", name])
        shutil.rmtree(base)


@pytest.fixture
def users(accounts):
    """Fresh, empty homes for the two users; returns their password database entries."""
    _base, names = accounts
    entries = []
    for name in names:
        entry = pwd.getpwnam(name)
        home = Path(entry.pw_dir)
        if home.exists():
            shutil.rmtree(home)
        home.mkdir(mode=0o755)
        os.chown(home, entry.pw_uid, entry.pw_gid)
        entries.append(entry)
    return entries


def user_config(entry):
    return Path(entry.pw_dir) / ".docker" / "config.json"


def make_user_file(entry, document, mode=0o600):
    path = user_config(entry)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    os.chown(path.parent, entry.pw_uid, entry.pw_gid)
    write_json(path, document)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(mode)
    return path


def publish_user(entry, **options):
    outcomes = publish(DockerSettings(config_files=(), users=(entry.pw_name,)), **options)
    assert len(outcomes) == 1
    return outcomes[0]


def snapshot(directory):
    """Return every entry below ``directory`` with its type, mode, owner and content."""
    result = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            status = os.lstat(path)
            content = Path(path).read_bytes() if stat.S_ISREG(status.st_mode) else None
            result[path] = (status.st_mode, status.st_uid, status.st_size, content)
    return result


def test_user_docker_directory_created(users):
    entry = users[0]
    path = user_config(entry)

    outcome = publish_user(entry)

    assert outcome.ok
    assert outcome.target == f"docker config {path}"
    directory = path.parent.lstat()
    assert stat.S_ISDIR(directory.st_mode)
    assert (directory.st_uid, directory.st_gid) == (entry.pw_uid, entry.pw_gid)
    assert stat.S_IMODE(directory.st_mode) == 0o700
    status = path.lstat()
    assert (status.st_uid, status.st_gid) == (entry.pw_uid, entry.pw_gid)
    assert stat.S_IMODE(status.st_mode) == 0o600
    assert read_json(path) == {"auths": {HOST: {"auth": AUTH}}}


def test_user_existing_file_updated(users):
    entry = users[0]
    path = make_user_file(entry, {"auths": {"quay.io": {}}, "detachKeys": "ctrl-x"}, mode=0o640)

    outcome = publish_user(entry)

    assert outcome.ok
    status = path.lstat()
    assert (status.st_uid, status.st_gid) == (entry.pw_uid, entry.pw_gid)
    assert stat.S_IMODE(status.st_mode) == 0o640
    written = read_json(path)
    assert written == {"auths": {"quay.io": {}, HOST: {"auth": AUTH}}, "detachKeys": "ctrl-x"}


def test_user_docker_link_to_other_user_rejected(users):
    victim, attacker = users
    victim_file = make_user_file(victim, {"auths": {}})
    before = snapshot(victim.pw_dir)
    Path(attacker.pw_dir, ".docker").symlink_to(victim_file.parent)

    outcome = publish_user(attacker)

    assert not outcome.ok
    assert attacker.pw_name in outcome.error
    assert f"{attacker.pw_dir}/.docker" in outcome.error
    assert "symbolic link" in outcome.error
    assert snapshot(victim.pw_dir) == before


def test_user_docker_link_to_etc_rejected(users, tmp_path):
    entry = users[0]
    before = sorted(os.listdir("/etc"))
    Path(entry.pw_dir, ".docker").symlink_to("/etc")

    outcome = publish_user(entry)

    assert not outcome.ok
    assert "symbolic link" in outcome.error
    assert sorted(os.listdir("/etc")) == before
    assert not Path("/etc/config.json").exists()


def test_user_docker_not_directory_rejected(users):
    entry = users[0]
    Path(entry.pw_dir, ".docker").write_text("not a directory")

    outcome = publish_user(entry)

    assert not outcome.ok
    assert "is a regular file" in outcome.error
    assert Path(entry.pw_dir, ".docker").read_text() == "not a directory"


def test_user_docker_owned_by_root_rejected(users):
    entry = users[0]
    Path(entry.pw_dir, ".docker").mkdir(mode=0o755)

    outcome = publish_user(entry)

    assert not outcome.ok
    assert f"not by user {entry.pw_name}" in outcome.error
    assert f"chown {entry.pw_name}" in outcome.error
    assert list(Path(entry.pw_dir, ".docker").iterdir()) == []


def test_user_config_symlink_rejected(users, tmp_path):
    victim, attacker = users
    victim_file = make_user_file(victim, {"auths": {}})
    before = snapshot(victim.pw_dir)
    path = make_user_file(attacker, {})
    path.unlink()
    path.symlink_to(victim_file)

    outcome = publish_user(attacker)

    assert not outcome.ok
    assert str(path) in outcome.error
    assert "symbolic link" in outcome.error
    assert f"user {attacker.pw_name} must replace it" in outcome.error
    assert path.is_symlink()
    assert snapshot(victim.pw_dir) == before


def test_user_config_hard_link_rejected(users):
    entry = users[0]
    path = make_user_file(entry, {"auths": {}})
    other = Path(entry.pw_dir, "elsewhere.json")
    os.link(path, other)
    content = path.read_bytes()

    outcome = publish_user(entry)

    assert not outcome.ok
    assert "2 hard links" in outcome.error
    assert entry.pw_name in outcome.error
    assert path.read_bytes() == content
    assert path.stat().st_ino == other.stat().st_ino


def test_user_config_owned_by_root_rejected(users):
    entry = users[0]
    path = make_user_file(entry, {"auths": {}})
    os.chown(path, 0, 0)

    outcome = publish_user(entry)

    assert not outcome.ok
    assert f"owned by uid 0, not by user {entry.pw_name}" in outcome.error
    assert path.stat().st_uid == 0


def test_user_config_fifo_rejected(users):
    entry = users[0]
    path = make_user_file(entry, {})
    path.unlink()
    os.mkfifo(path)
    os.chown(path, entry.pw_uid, entry.pw_gid)

    outcome = run_with_hang_guard(lambda: publish_user(entry))

    assert not outcome.ok
    assert "named pipe (FIFO)" in outcome.error


def test_user_missing(tmp_path):
    name = f"ecrabsent{secrets.token_hex(4)}"

    outcomes = publish(DockerSettings(config_files=(), users=(name,)))

    assert len(outcomes) == 1
    assert not outcomes[0].ok
    assert f"user {name} does not exist" in outcomes[0].error
    assert outcomes[0].target == f"docker config ~{name}/.docker/config.json"


def test_user_home_missing(tmp_path):
    home = tmp_path / "absent-home"

    def lookup(name):
        return pwd.struct_passwd((name, "x", 4321, 4321, "", str(home), "/bin/sh"))

    outcomes = publish(DockerSettings(config_files=(), users=("standin",)), pwd_lookup=lookup)

    assert not outcomes[0].ok
    assert f"home directory {home} of user standin does not exist" in outcomes[0].error
    assert not home.exists()


def test_user_helper_runs_as_user(users, helper_dir, monkeypatch):
    entry = users[0]
    install_helper(helper_dir, "standin", RECORDING_HELPER.format(records=helper_dir / "records"))
    add_to_path(monkeypatch, helper_dir)
    path = make_user_file(entry, {"credsStore": "standin"})

    outcome = publish_user(entry)

    assert outcome.ok
    assert outcome.warning is None
    record = helper_dir / "records" / f"stored-{entry.pw_uid}.json"
    assert json.loads(record.read_text())["Secret"] == PASSWORD
    assert read_json(path) == {"credsStore": "standin", "auths": {HOST: {}}}


def test_user_and_admin_files_together(users, tmp_path):
    entry = users[0]
    admin = tmp_path / "config.json"

    outcomes = publish(DockerSettings(config_files=(admin,), users=(entry.pw_name,)))

    assert [outcome.target for outcome in outcomes] == [
        f"docker config {admin}",
        f"docker config {user_config(entry)}",
    ]
    assert all(outcome.ok for outcome in outcomes)


def test_module_exports_target():
    assert docker_config.DockerConfigTarget.name == "docker config"
