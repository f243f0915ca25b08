"""The benchmark driver: runs every figure inside the namespace and writes results.json.

    ip netns exec NAMESPACE python -m benchmarks.figures --scenario scenario.json

main.py brings the testbed up and starts this module inside its namespace, so that every
process it starts resolves the ECR host names to the testbed. Variants of a figure run
in alternation (A B C A B C ...), after one untimed warm-up run of each.
"""

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

from benchmarks import measure
from benchmarks.measure import NotifyHub, RunningProcess, run_timed, summarize
from benchmarks.scenario import DEFAULT_RENEWAL, Scenario, registry_host
from benchmarks.testbed import REGIONS
from benchmarks.testbed import control as emulator_control
from tests.e2e.rig import ACCOUNT, HOST, REGION

CLIENT_BUILT = re.compile(r"AWS credentials for .* come from")
TOKEN_LIFETIME = 12 * 3600.0
DAY = 86400.0
DAY_ACCOUNTS = ("111111111111", "222222222222", "333333333333", "444444444444", "555555555555")
WATCHDOG_USEC = 60_000_000  # WatchdogSec=60s, as systemd/ecr-agent.service sets


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Driver:
    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.counts = scenario.counts
        self.sets = list(scenario.pythons)
        self.hub = NotifyHub(scenario.directory("notify"))
        self.logs = scenario.directory("logs")
        self.results: dict = {"figures": {}, "commands": {}, "configs": {}}
        self.running: list[RunningProcess] = []
        # Without the rig's dockerd the figures run with the config file target only.
        self.kinds = (
            (("daemon", True), ("file", False)) if scenario.with_docker else (("file", False),)
        )

    def control(self, path: str, settings: dict | None = None) -> dict:
        return emulator_control(path, settings, self.scenario.control_port)

    # -- helpers -----------------------------------------------------------------------

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def timed(self, name: str, command, env, stdin_data=None) -> measure.Finished:
        finished = run_timed(command, env, self.log(name), stdin_data=stdin_data)
        if finished.returncode != 0:
            raise RuntimeError(f"{name} exited with {finished.returncode}; see {self.log(name)}")
        return finished

    def start(self, name: str, command, env, ready=True, timeout=180.0) -> RunningProcess:
        """Start a long-running process; with ``ready``, wait for its READY=1."""
        notify = self.hub.path(name)
        process = RunningProcess(name, command, dict(env, NOTIFY_SOCKET=notify), self.log(name))
        self.running.append(process)
        process.start()
        if ready:
            self.hub.wait_for(name, "READY=1", process.started_at, timeout)
        return process

    def stop(self, process: RunningProcess) -> None:
        process.stop()
        if process in self.running:
            self.running.remove(process)

    def stop_all(self) -> None:
        for process in list(self.running):
            self.stop(process)

    def record(self, figure: str, samples: dict, **extra) -> None:
        entry = {name: summarize(values) for name, values in samples.items()}
        self.results["figures"][figure] = dict(extra, samples=entry)

    def agent_config(self, name: str, **options) -> Path:
        path = self.scenario.agent_config(self.scenario.directory("agents", name), **options)
        self.results["configs"].setdefault(name, path.read_text())
        return path

    # -- figures 1 to 3: renewals, one-shot runs, start to READY ---------------------

    def oneshots(self) -> None:
        """Measure renewals in running agents, one-shot refreshes, starts and the floor."""
        s = self.scenario
        rounds = self.counts["rounds"]
        say(f"figures 1-3: {rounds} rounds of renewals, one-shot runs and starts")
        samples: dict[str, list[float]] = defaultdict(list)
        cpu: dict[str, list[float]] = defaultdict(list)

        running = {}
        for dependency_set in self.sets:
            config = self.agent_config(
                f"running-{dependency_set}", verify_login=s.with_docker, log_level="debug"
            )
            command = s.agent_command(dependency_set, config, "run")
            running[dependency_set] = self.start(
                f"running-{dependency_set}", command, s.agent_env()
            )

        diy_dir = s.directory("diy", "docker")
        variants = []
        for dependency_set in self.sets:
            for kind, verify in self.kinds:
                name = f"{kind}-{dependency_set}"
                config = self.agent_config(name, verify_login=verify)
                variants.append((name, dependency_set, config))

        def one_round(record: bool) -> None:
            def keep(key, value, cpu_seconds=None):
                if record:
                    samples[key].append(value)
                    if cpu_seconds is not None:
                        cpu[key].append(cpu_seconds)

            for dependency_set, agent in running.items():
                times = agent.renew_now()
                keep(f"renewal in running agent ({dependency_set})", times["pass"])
                for part in ("token_calls", "targets", "state_file", "signal_to_line"):
                    keep(f"renewal {part} ({dependency_set})", times[part])
            if s.with_docker:
                diy = self.timed("diy", s.diy_command(), s.docker_env(diy_dir))
                keep("DIY pipeline", diy.seconds, diy.cpu_seconds)

            for name, dependency_set, config in variants:
                command = s.agent_command(dependency_set, config, "refresh")
                finished = self.timed(f"refresh-{name}", command, s.agent_env())
                keep(f"refresh {name}", finished.seconds, finished.cpu_seconds)

            for dependency_set in self.sets:
                output = s.directory("floor", dependency_set) / "config.json"
                name = f"floor-{dependency_set}"
                env = s.agent_env(NOTIFY_SOCKET=self.hub.path(name))
                finished = self.timed(name, s.floor_command(dependency_set, output), env)
                ready = self.hub.wait_for(name, "READY=1", finished.started, 5)
                keep(f"floor {dependency_set}", finished.seconds, finished.cpu_seconds)
                keep(f"floor start to write {dependency_set}", ready - finished.started)

            for name, dependency_set, config in variants:
                command = s.agent_command(dependency_set, config, "run")
                process = self.start(f"run-{name}", command, s.agent_env(), ready=False)
                ready = self.hub.wait_for(f"run-{name}", "READY=1", process.started_at, 120)
                self.stop(process)
                keep(f"run to READY {name}", ready - process.started_at)

        one_round(record=False)
        for number in range(rounds):
            one_round(record=True)
            say(f"  round {number + 1}/{rounds} done")
        for agent in running.values():
            self.stop(agent)

        commands = self.results["commands"]
        commands["DIY pipeline"] = s.diy_pipeline()
        for name, dependency_set, config in variants:
            commands[f"refresh {name}"] = " ".join(
                s.agent_command(dependency_set, config, "refresh")
            )
            commands[f"run {name}"] = " ".join(s.agent_command(dependency_set, config, "run"))
        for dependency_set in self.sets:
            output = s.work / "floor" / dependency_set / "config.json"
            commands[f"floor {dependency_set}"] = " ".join(s.floor_command(dependency_set, output))
        self.record("oneshots", samples, cpu={k: summarize(v) for k, v in cpu.items()})

    # -- figure 4: idle memory and CPU -------------------------------------------------

    def idle(self) -> None:
        s = self.scenario
        copies = self.counts["idle_copies"]
        window = self.counts["idle_seconds"]
        say(f"figure 4: {copies} copies of each idle process, {window:g} s window")
        processes: dict[str, list[RunningProcess]] = defaultdict(list)
        for copy in range(copies):
            for dependency_set in self.sets:
                for kind, verify in self.kinds:
                    name = f"idle-{kind}-{dependency_set}-{copy}"
                    config = self.agent_config(name, verify_login=verify)
                    env = s.agent_env(WATCHDOG_USEC=WATCHDOG_USEC)
                    command = s.agent_command(dependency_set, config, "run")
                    variant = f"ecr-agent run, {kind} ({dependency_set})"
                    processes[variant].append(self.start(name, command, env))
                output = s.directory("idle-floor", f"{dependency_set}-{copy}") / "config.json"
                command = s.floor_command(dependency_set, output, sleep=True)
                name = f"idle-floor-{dependency_set}-{copy}"
                processes[f"floor ({dependency_set})"].append(
                    self.start(name, command, s.agent_env())
                )
        time.sleep(5)

        begin = time.perf_counter()
        before = {p.pid: _cpu(p.pid) for group in processes.values() for p in group}
        time.sleep(window)
        end = time.perf_counter()
        after = {p.pid: _cpu(p.pid) for group in processes.values() for p in group}
        elapsed = end - begin

        rss, anon, stat_hour, sched_hour, pings = (defaultdict(list) for _ in range(5))
        for variant, group in processes.items():
            for process in group:
                rss[variant].append(measure.status_kib(process.pid, "VmRSS") / 1024)
                anon[variant].append(measure.status_kib(process.pid, "RssAnon") / 1024)
                stat_cpu = after[process.pid][0] - before[process.pid][0]
                sched_cpu = after[process.pid][1] - before[process.pid][1]
                stat_hour[variant].append(stat_cpu * 3600 / elapsed)
                sched_hour[variant].append(sched_cpu * 3600 / elapsed)
                pings[variant].append(self.hub.count(process.name, "WATCHDOG=1", begin, end))
        self.stop_all()
        self.results["figures"]["idle"] = {
            "window_seconds": elapsed,
            "watchdog_usec": WATCHDOG_USEC,
            "rss_mib": {k: summarize(v) for k, v in rss.items()},
            "rss_anon_mib": {k: summarize(v) for k, v in anon.items()},
            "cpu_per_hour_stat": {k: summarize(v) for k, v in stat_hour.items()},
            "cpu_per_hour_schedstat": {k: summarize(v) for k, v in sched_hour.items()},
            "watchdog_pings": {k: summarize(v) for k, v in pings.items()},
        }

    # -- figure 5: regions in one pass -------------------------------------------------

    def regions(self) -> None:
        s = self.scenario
        rounds = self.counts["rounds"]
        delay = self.counts["region_delay"]
        modes = {
            "moto": {"delay": 0.0, "cache": False},
            "cached": {"delay": 0.0, "cache": True},
            f"cached + {delay * 1000:g} ms": {"delay": delay, "cache": True},
        }
        say(f"figure 5: 1, 5 and 20 regions, {rounds} renewals each in modes {', '.join(modes)}")
        agents = {}
        for dependency_set in self.sets:
            for count in (1, 5, 20):
                name = f"regions-{count}-{dependency_set}"
                registries = [(ACCOUNT, region) for region in REGIONS[:count]]
                config = self.agent_config(
                    name, registries=registries, verify_login=False, log_level="debug"
                )
                command = s.agent_command(dependency_set, config, "run")
                agents[(dependency_set, count)] = self.start(name, command, s.agent_env())

        samples: dict[str, list[float]] = defaultdict(list)
        cpu: dict[str, float] = {}
        for (dependency_set, count), agent in agents.items():
            _, match = agent.wait_line(measure.PASS_LINE, 0, 10)
            key = f"first pass, {count} regions ({dependency_set})"
            samples[key].append(measure.pass_times(match)["pass"])
        for mode, settings in modes.items():
            self.control("/settings", settings)
            for agent in agents.values():
                agent.renew_now()  # warm-up, and it fills the emulator's cache
            used = {key: measure.cpu_seconds_stat(agent.pid) for key, agent in agents.items()}
            for _ in range(rounds):
                for (dependency_set, count), agent in agents.items():
                    times = agent.renew_now()
                    key = f"{count} regions, {mode} ({dependency_set})"
                    samples[key].append(times["pass"])
                    samples[f"token calls of {key}"].append(times["token_calls"])
            for (dependency_set, count), agent in agents.items():
                spent = measure.cpu_seconds_stat(agent.pid) - used[(dependency_set, count)]
                cpu[f"{count} regions, {mode} ({dependency_set})"] = spent / rounds
        profiles = {}
        for dependency_set in self.sets:
            agent = agents[(dependency_set, 20)]
            label = f"20 regions, {mode} ({dependency_set})"
            profiles[label] = self.profile(agent, 3 * rounds)
        self.control("/settings", {"delay": 0.0, "cache": False})

        builds = {}
        for (dependency_set, count), agent in agents.items():
            passes = agent.count_lines(measure.PASS_LINE)
            built = agent.count_lines(CLIENT_BUILT)
            builds[f"{count} regions ({dependency_set})"] = {"passes": passes, "clients": built}
        self.stop_all()
        self.record(
            "regions",
            samples,
            client_builds=builds,
            modes=modes,
            cpu_per_pass=cpu,
            profiles=profiles,
        )

    def profile(self, agent: RunningProcess, renewals: int) -> dict | None:
        """Sample the agent with py-spy while it renews; only threads holding the GIL count."""
        py_spy = Path(sys.executable).parent / "py-spy"
        if not py_spy.exists():
            return None
        output = self.logs / f"profile-{agent.name}.txt"
        command = [py_spy, "record", "--gil", "--nonblocking", "--rate", "1000"]
        command += ["--format", "raw", "--output", output, "--pid", str(agent.pid)]
        with open(self.log(f"py-spy-{agent.name}"), "ab") as log:
            spy = subprocess.Popen(command, stdout=log, stderr=log)
            time.sleep(1)  # py-spy attaches to the process
            for _ in range(renewals):
                agent.renew_now()
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        if not output.exists():
            return None
        return dict(measure.summarize_profile(output.read_text()), passes=renewals)

    # -- figure 6: docker pull with auths against the credential helper ---------------

    def pulls(self) -> None:
        s = self.scenario
        if not s.with_docker:
            say("figure 6 needs the rig's dockerd: skipped")
            return
        rounds = self.counts["rounds"]
        say(f"figure 6: {rounds} rounds of docker pull (auths, helper cold, helper warm)")
        config = self.agent_config("pull-auths", verify_login=False)
        self.timed("pull-refresh", s.agent_command(self.sets[0], config, "refresh"), s.agent_env())
        auths_dir = config.parent / "docker"

        helper_dir = s.directory("pull-helper", "docker")
        (helper_dir / "config.json").write_text(json.dumps({"credHelpers": {HOST: "ecr-login"}}))
        cache = s.work / "pull-helper" / "ecr-cache"
        helper_env = s.docker_env(helper_dir, AWS_ECR_CACHE_DIR=cache)
        auths_env = s.docker_env(auths_dir)
        self.timed("pull-first", s.pull_command(), auths_env)  # the image is present from now on

        samples: dict[str, list[float]] = defaultdict(list)
        for number in range(rounds + 1):
            record = number > 0
            finished = self.timed("pull-auths", s.pull_command(), auths_env)
            if record:
                samples["docker pull, ecr-agent's auths entry"].append(finished.seconds)
            shutil.rmtree(cache, ignore_errors=True)
            finished = self.timed("pull-helper-cold", s.pull_command(), helper_env)
            if record:
                samples["docker pull, credential helper, cold cache"].append(finished.seconds)
            finished = self.timed("pull-helper-warm", s.pull_command(), helper_env)
            if record:
                samples["docker pull, credential helper, warm cache"].append(finished.seconds)
        self.results["commands"]["docker pull"] = " ".join(s.pull_command())
        self.results["commands"]["helper config.json"] = (helper_dir / "config.json").read_text()
        self.record("pulls", samples)

    # -- figure 7: token calls per day --------------------------------------------------

    def token_calls(self) -> None:
        s = self.scenario
        scale = self.counts["scale"]
        days = self.counts["days"]
        diy_days = min(self.counts["diy_days"], days)
        day = DAY / scale
        say(f"figure 7: {days} accelerated days of {day:g} s (time scaled by 1/{scale:g})")
        self.control("/settings", {"expires_in": TOKEN_LIFETIME / scale})
        renewal = {key: value / scale for key, value in DEFAULT_RENEWAL.items()}
        renewal["lifetime_fraction"] = DEFAULT_RENEWAL["lifetime_fraction"]
        registries = [(account, REGION) for account in DAY_ACCOUNTS]

        agents = []
        for dependency_set in self.sets:
            name = f"day-{dependency_set}"
            config = self.agent_config(
                name, registries=registries, verify_login=False, renewal=renewal
            )
            command = s.agent_command(dependency_set, config, "run")
            agents.append(self.start(name, command, s.agent_env()))

        stop = threading.Event()
        helper_cache = s.work / "day-helper-cache"
        shutil.rmtree(helper_cache, ignore_errors=True)
        helper_env = s.base_env(AWS_ECR_CACHE_DIR=helper_cache)
        pull_every = 1800 / scale  # a pull from each registry every 30 minutes
        cron_every = 6 * 3600 / scale  # crontab: 0 */6 * * *

        def helper_loop():
            # The helper reaches the ECR API by its host name, which only the rig maps.
            while s.with_docker and not stop.is_set():
                for account in DAY_ACCOUNTS:
                    subprocess.run(
                        [s.helper, "get"],
                        input=registry_host(account).encode(),
                        env=helper_env,
                        capture_output=True,
                        check=False,
                    )
                stop.wait(pull_every)

        def cron_loop():
            started = time.perf_counter()
            runs = 0
            while runs < diy_days * 4:
                # One pipeline per account; its password call is the same for each.
                for _account in DAY_ACCOUNTS:
                    command = [s.aws, "ecr", "get-login-password", "--region", REGION]
                    command += ["--endpoint-url", s.endpoint(REGION)]
                    subprocess.run(command, env=s.base_env(), capture_output=True, check=False)
                runs += 1
                stop.wait(max(0.0, started + runs * cron_every - time.perf_counter()))

        self.control("/reset")
        threads = [threading.Thread(target=helper_loop), threading.Thread(target=cron_loop)]
        for thread in threads:
            thread.start()
        snapshots = []
        started = time.perf_counter()
        for number in range(1, days + 1):
            time.sleep(max(0.0, started + number * day - time.perf_counter()))
            snapshots.append(self.control("/counts")["calls"])
            say(f"  day {number}/{days}")
        stop.set()
        for thread in threads:
            thread.join()
        # The cron job's runs may end after the day they began in, so its calls are
        # counted once all of them have ended.
        diy_total = _calls_by_client(self.control("/counts")["calls"], {}).get("DIY cron", 0)
        self.stop_all()
        self.control("/settings", {"expires_in": TOKEN_LIFETIME})

        versions = self.results.get("boto3_versions", {})
        per_day: dict[str, list[int]] = defaultdict(list)
        previous: dict[str, int] = {}
        for snapshot in snapshots:
            totals = _calls_by_client(snapshot, versions)
            for client, total in totals.items():
                if not client.startswith("DIY"):
                    per_day[client].append(total - previous.get(client, 0))
            previous = totals
        if diy_days:
            per_day["DIY cron"] = [diy_total / diy_days]
        self.results["figures"]["token_calls"] = {
            "scale": scale,
            "day_seconds": day,
            "days": days,
            "diy_days": diy_days,
            "renewal": renewal,
            "token_lifetime_seconds": TOKEN_LIFETIME / scale,
            "pull_every_seconds": pull_every,
            "cron_every_seconds": cron_every,
            "per_day": {client: summarize(values) for client, values in per_day.items()},
        }

    # -- figure 8: memory and descriptors over many renewals --------------------------

    def endurance(self) -> None:
        s = self.scenario
        renewals = self.counts["renewals"]
        say(f"figure 8: {renewals} renewals (SIGUSR1) per dependency set")
        checkpoints = sorted({1, 10, 100, renewals // 4, renewals // 2, renewals})
        series: dict[str, list[dict]] = {}
        durations: dict[str, list[float]] = {}

        def endure(dependency_set: str) -> None:
            name = f"endurance-{dependency_set}"
            config = self.agent_config(name, verify_login=s.with_docker, log_level="debug")
            agent = self.start(name, s.agent_command(dependency_set, config, "run"), s.agent_env())
            points = [_sample(agent.pid, 0)]
            passes = []
            for number in range(1, renewals + 1):
                passes.append(agent.renew_now()["pass"])
                if number in checkpoints:
                    points.append(_sample(agent.pid, number))
            series[dependency_set] = points
            durations[dependency_set] = passes
            self.stop(agent)

        threads = [threading.Thread(target=endure, args=(name,)) for name in self.sets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.results["figures"]["endurance"] = {
            "renewals": renewals,
            "series": series,
            "pass_seconds": {k: summarize(v) for k, v in durations.items()},
        }

    # -- profiles ------------------------------------------------------------------------

    def import_times(self) -> None:
        """Import-time breakdown (python -X importtime) of a refresh and of the floor."""
        say("import times")
        s = self.scenario
        breakdown = {}
        for dependency_set in self.sets:
            python = s.pythons[dependency_set]
            kind, verify = self.kinds[0]
            config = self.agent_config(f"{kind}-{dependency_set}", verify_login=verify)
            refresh = s.agent_command(dependency_set, config, "refresh")
            runs = {
                f"ecr-agent refresh, {kind} ({dependency_set})": [
                    python, "-X", "importtime", *refresh[1:]
                ],
                f"floor ({dependency_set})": [
                    python, "-X", "importtime",
                    *s.floor_command(dependency_set, s.work / "floor" / "importtime.json")[1:],
                ],
            }  # fmt: skip
            for label, command in runs.items():
                result = subprocess.run(command, env=s.agent_env(), capture_output=True, text=True)
                breakdown[label] = _import_breakdown(result.stderr)
        self.results["import_times"] = breakdown


def _cpu(pid: int) -> tuple[float, float]:
    return measure.cpu_seconds_stat(pid), measure.cpu_seconds_schedstat(pid)


def _sample(pid: int, renewals: int) -> dict:
    return {
        "renewals": renewals,
        "rss_kib": measure.status_kib(pid, "VmRSS"),
        "rss_anon_kib": measure.status_kib(pid, "RssAnon"),
        "descriptors": measure.open_descriptors(pid),
        "threads": measure.thread_count(pid),
    }


def _calls_by_client(calls: dict, boto3_versions: dict) -> dict[str, int]:
    """Sum token calls by client; ecr-agent's are split by dependency set (Boto3/VERSION)."""
    sets_by_sdk = {f"Boto3/{version}": name for name, version in boto3_versions.items()}
    totals: dict[str, int] = defaultdict(int)
    for key, count in calls.items():
        client, sdk, target = key.split(" ", 2)
        if not target.endswith("GetAuthorizationToken"):
            continue
        if client == "ecr-agent":
            totals[f"ecr-agent ({sets_by_sdk.get(sdk, sdk)})"] += count
        elif client == "aws-cli":
            totals["DIY cron"] += count
        elif client == "ecr-login":
            totals["credential helper"] += count
        else:
            totals[client] += count
    return dict(totals)


def _import_breakdown(stderr: str, top: int = 8) -> dict:
    """Sum the cumulative import time of top-level imports by package, in seconds."""
    by_package: dict[str, float] = defaultdict(float)
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if not cumulative.strip().isdigit() or name[1:2] == " ":
            continue  # the header line, or a nested import
        by_package[name.strip().split(".")[0]] += int(cumulative) / 1e6
    total = sum(by_package.values())
    ranked = sorted(by_package.items(), key=lambda item: item[1], reverse=True)
    return {"total": total, "top": ranked[:top]}


FIGURES = ("import_times", "oneshots", "pulls", "regions", "idle", "token_calls", "endurance")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--only", nargs="*", choices=FIGURES, help="run only these figures")
    args = parser.parse_args(argv)

    scenario = Scenario.load(args.scenario)
    driver = Driver(scenario)
    driver.results["boto3_versions"] = scenario.counts.get("boto3_versions", {})
    try:
        for figure in args.only or FIGURES:
            getattr(driver, figure)()
            args.output.write_text(json.dumps(driver.results, indent=1))
    finally:
        driver.stop_all()
        driver.hub.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
