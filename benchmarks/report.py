"""Render BENCHMARKS.md from the driver's results (results.json) and the run's metadata."""

import itertools

from benchmarks.testbed import BCRYPT_COST

GOAL_RENEWAL = 0.1  # renewal in the running agent / DIY cron renewal
GOAL_REFRESH = 1.2  # cold one-shot refresh / floor script
GOAL_READY = 1.3  # start to READY=1 / floor's start to its write
GOAL_REGIONS = 1.5  # 20 regions / 1 region, one pass
GOAL_GROWTH_KIB = 1024  # RSS growth over the renewals of figure 8
GOAL_IDLE_CPU = 0.2  # seconds of CPU per hour, idle


def ms(seconds) -> str:
    if seconds is None:
        return "-"
    value = seconds * 1000
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def ratio(numerator, denominator) -> str:
    if numerator is None or not denominator:
        return "-"
    return f"{numerator / denominator:.2f}x"


def median(summary) -> float | None:
    return summary["median"] if summary else None


def spread(summary, scale=1000.0, digits=1) -> str:
    if not summary or summary["n"] == 0:
        return "-"
    return f"{summary['min'] * scale:.{digits}f}-{summary['max'] * scale:.{digits}f}"


def verdict(value, limit, lower_is_better=True) -> str:
    if value is None:
        return "not measured"
    met = value <= limit if lower_is_better else value >= limit
    return "met" if met else "**not met**"


class Report:
    def __init__(self, results: dict, meta: dict):
        self.results = results
        self.figures = results.get("figures", {})
        self.meta = meta
        self.sets = list(meta["pythons"])
        self.lines: list[str] = []
        self.goals: list[tuple[str, str, str, str]] = []  # goal, case, measured, verdict

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.add("| " + " | ".join(header) + " |", "|" + "---|" * len(header))
        for row in rows:
            self.add("| " + " | ".join(row) + " |")
        self.add("")

    def goal(self, name: str, case: str, value, limit, text: str) -> None:
        self.goals.append((name, case, text, verdict(value, limit)))

    # -- sections ----------------------------------------------------------------------

    def oneshots(self) -> None:
        figure = self.figures.get("oneshots")
        if not figure:
            return
        samples, cpu = figure["samples"], figure.get("cpu", {})
        diy = median(samples.get("DIY pipeline"))
        self.add(
            "## Figure 1: one renewal in the running agent against one DIY cron renewal",
            "",
            "The agent runs (`ecr-agent run`, config file target and `verify_login`), and "
            "SIGUSR1 makes it renew; the time is the pass's own, from its debug log line "
            "(token call, config file write, daemon login check, state file). The DIY "
            "renewal is the cron job's pipeline, timed from fork to exit; it does the same "
            "work: token call, `docker login` (the daemon checks the login with the "
            "registry) and the config file write.",
            "",
        )
        rows = []
        for name in self.sets:
            key = f"renewal in running agent ({name})"
            summary = samples.get(key)
            rows.append(
                [f"ecr-agent renewal ({name})", ms(median(summary)), spread(summary),
                 str(summary["n"] if summary else 0), ratio(median(summary), diy)]
            )  # fmt: skip
            self.goal(
                "renewal in the running agent ≤ 0.1x DIY",
                name,
                median(summary) / diy if summary and diy else None,
                GOAL_RENEWAL,
                f"{ms(median(summary))} ms / {ms(diy)} ms = {ratio(median(summary), diy)}",
            )
        summary = samples.get("DIY pipeline")
        if summary:
            rows.append(["DIY pipeline", ms(diy), spread(summary), str(summary["n"]), "1.00x"])
        self.table(["variant", "median ms", "min-max ms", "n", "ratio to DIY"], rows)

        parts = []
        for name in self.sets:
            cells = [name]
            for part in ("token_calls", "targets", "state_file", "signal_to_line"):
                cells.append(ms(median(samples.get(f"renewal {part} ({name})"))))
            parts.append(cells)
        self.add("Parts of the agent's renewal (medians, ms); the last column is the time")
        self.add("from sending SIGUSR1 to reading the log line, which adds signal delivery")
        self.add("and the pipe to the benchmark:")
        self.add("")
        self.table(["set", "token call", "targets", "state file", "signal to log line"], parts)
        if cpu.get("DIY pipeline"):
            self.add(
                f"CPU time of one DIY renewal (sh, aws, docker; wait4): median "
                f"{ms(median(cpu['DIY pipeline']))} ms.",
                "",
            )

        self.add(
            "## Figure 2: one-shot `ecr-agent refresh`, cold, against the DIY pipeline and "
            "the floor",
            "",
            "Each run is a new process, timed from fork to exit (wait4), with a warm page "
            "cache and compiled bytecode, as a cron job or a timer runs it. `daemon` is the "
            "configuration of figure 1 (config file and daemon login check); `file` writes "
            "the config file only, which is the floor script's work. The floor "
            "(benchmarks/floor.py) imports boto3, docker and sdnotify, makes one token call "
            "and one atomic write.",
            "",
        )
        rows = []
        for name in self.sets:
            floor = median(samples.get(f"floor {name}"))
            for kind in ("daemon", "file"):
                summary = samples.get(f"refresh {kind}-{name}")
                value = median(summary)
                rows.append(
                    [f"ecr-agent refresh, {kind} ({name})", ms(value), spread(summary),
                     str(summary["n"] if summary else 0),
                     ms(median(cpu.get(f"refresh {kind}-{name}"))),
                     ratio(value, floor), ratio(value, diy)]
                )  # fmt: skip
                self.goal(
                    "cold one-shot refresh ≤ 1.2x floor",
                    f"{kind} ({name})",
                    value / floor if value and floor else None,
                    GOAL_REFRESH,
                    f"{ms(value)} ms / {ms(floor)} ms = {ratio(value, floor)}",
                )
            summary = samples.get(f"floor {name}")
            rows.append(
                [f"floor ({name})", ms(floor), spread(summary), str(summary["n"]),
                 ms(median(cpu.get(f"floor {name}"))), "1.00x", ratio(floor, diy)]
            )  # fmt: skip
        summary = samples.get("DIY pipeline")
        if summary:
            rows.append(
                ["DIY pipeline", ms(diy), spread(summary), str(summary["n"]),
                 ms(median(cpu.get("DIY pipeline"))), "-", "1.00x"]
            )  # fmt: skip
        header = ["variant", "median ms", "min-max ms", "n", "CPU ms", "to floor", "to DIY"]
        self.table(header, rows)

        self.add(
            "## Figure 3: cold start to READY=1 against the floor's start to its write",
            "",
            "`ecr-agent run` sends READY=1 once the first renewal pass is done; the benchmark "
            "receives it on its own NOTIFY_SOCKET. The floor sends READY=1 right after its "
            "write. Both are timed from fork to the datagram's arrival.",
            "",
        )
        rows = []
        for name in self.sets:
            floor = median(samples.get(f"floor start to write {name}"))
            for kind in ("daemon", "file"):
                summary = samples.get(f"run to READY {kind}-{name}")
                value = median(summary)
                rows.append(
                    [f"ecr-agent run, {kind} ({name})", ms(value), spread(summary),
                     str(summary["n"] if summary else 0), ratio(value, floor)]
                )  # fmt: skip
                self.goal(
                    "start to READY ≤ 1.3x floor",
                    f"{kind} ({name})",
                    value / floor if value and floor else None,
                    GOAL_READY,
                    f"{ms(value)} ms / {ms(floor)} ms = {ratio(value, floor)}",
                )
            summary = samples.get(f"floor start to write {name}")
            rows.append(
                [f"floor, start to write ({name})", ms(floor), spread(summary),
                 str(summary["n"]), "1.00x"]
            )  # fmt: skip
        self.table(["variant", "median ms", "min-max ms", "n", "ratio to floor"], rows)

    def idle(self) -> None:
        figure = self.figures.get("idle")
        if not figure:
            return
        window = figure["window_seconds"]
        self.add(
            "## Figure 4: idle memory and CPU",
            "",
            f"Copies of each process run side by side; after all sent READY=1 and 5 s more, "
            f"CPU time is read before and after an idle window of {window:.0f} s and "
            "extrapolated to an hour. `ecr-agent run` has WATCHDOG_USEC="
            f"{figure['watchdog_usec']} (WatchdogSec=60s, as the shipped unit), so it wakes "
            "and pings every 30 s; the pings are counted on its notify socket. CPU comes "
            "from /proc/PID/stat (utime + stime, 10 ms ticks) and from "
            "/proc/PID/task/*/schedstat (nanoseconds). VmRSS is read at the end of the "
            "window; the floor sleeps after its work.",
            "",
        )
        rss = figure["rss_mib"]
        rows = []
        for variant, summary in rss.items():
            floor_key = "floor (" + variant.rsplit("(", 1)[1]
            floor = median(rss.get(floor_key))
            rows.append(
                [variant, f"{summary['median']:.1f}", spread(summary, 1, 1), str(summary["n"]),
                 f"{figure['rss_anon_mib'][variant]['median']:.1f}",
                 ratio(summary["median"], floor),
                 f"{figure['cpu_per_hour_stat'][variant]['median']:.3f}",
                 f"{figure['cpu_per_hour_schedstat'][variant]['median']:.4f}",
                 f"{figure['watchdog_pings'][variant]['median']:.0f}"]
            )  # fmt: skip
            if variant.startswith("ecr-agent"):
                case = variant.removeprefix("ecr-agent run, ")
                self.goal(
                    "idle RSS ≤ floor's",
                    case,
                    summary["median"] / floor if floor else None,
                    1.0,
                    f"{summary['median']:.1f} MiB / {floor:.1f} MiB = "
                    f"{ratio(summary['median'], floor)}",
                )
                cpu_hour = figure["cpu_per_hour_schedstat"][variant]["median"]
                self.goal(
                    "idle CPU ≤ 0.2 s per hour",
                    case,
                    cpu_hour,
                    GOAL_IDLE_CPU,
                    f"{cpu_hour:.4f} s/h (schedstat); "
                    f"{figure['cpu_per_hour_stat'][variant]['median']:.3f} s/h (stat ticks)",
                )
        header = ["process", "VmRSS MiB", "min-max", "n", "RssAnon MiB", "RSS to floor",
                  "CPU s/h (stat)", "CPU s/h (schedstat)", "pings"]  # fmt: skip
        self.table(header, rows)

    def regions(self) -> None:
        figure = self.figures.get("regions")
        if not figure:
            return
        samples = figure["samples"]
        modes = list(figure["modes"])
        delay_ms = figure["modes"][modes[-1]]["delay"] * 1000
        self.add(
            "## Figure 5: 1, 5 and 20 regions renewed in one pass",
            "",
            "One running agent per region count and set, one registry per region, each "
            "region with its own endpoint and boto3 client; config file target only (the "
            "registry serves one host). SIGUSR1 starts each pass; the time is the agent's "
            "own. Modes: `moto`, every call answered by moto through the emulator; "
            "`cached`, the emulator answers from moto's first answer for that region (moto "
            "handles one request at a time, so 20 concurrent calls otherwise queue in moto); "
            f"`{modes[-1]}`, cached and each call held {delay_ms:g} ms, a stand-in for the "
            "network and service latency of a real ECR endpoint. "
            "Agent CPU per pass is the agent's utime + stime over the rounds, divided by "
            "their number.",
            "",
        )
        rows = []
        for mode in modes:
            for name in self.sets:
                one = median(samples.get(f"1 regions, {mode} ({name})"))
                for count in (1, 5, 20):
                    key = f"{count} regions, {mode} ({name})"
                    summary = samples.get(key)
                    cpu = figure["cpu_per_pass"].get(key)
                    rows.append(
                        [mode, name, str(count), ms(median(summary)), spread(summary),
                         str(summary["n"] if summary else 0), ratio(median(summary), one),
                         ms(cpu)]
                    )  # fmt: skip
                twenty = median(samples.get(f"20 regions, {mode} ({name})"))
                if mode == modes[-1]:
                    self.goal(
                        "20 regions ≤ 1.5x one region",
                        f"{mode} ({name})",
                        twenty / one if twenty and one else None,
                        GOAL_REGIONS,
                        f"{ms(twenty)} ms / {ms(one)} ms = {ratio(twenty, one)}",
                    )
        header = ["mode", "set", "regions", "median ms", "min-max ms", "n", "to 1 region",
                  "agent CPU ms/pass"]  # fmt: skip
        self.table(header, rows)

        rows = []
        reused = True
        for key, entry in figure["client_builds"].items():
            first = median(samples.get(f"first pass, {key}"))
            rows.append([key, ms(first), str(entry["passes"]), str(entry["clients"])])
            reused &= entry["clients"] == int(key.split(" ", 1)[0])
        verdict_text = (
            "After all passes each count equals the number of regions, so no client was rebuilt."
            if reused
            else "**Some agent built more clients than it has regions.**"
        )
        self.add(
            "Client reuse: each agent logs `AWS credentials for ... come from` once per "
            f"client it builds. {verdict_text} The first pass builds the clients one after "
            "another, from one shared boto3 session.",
            "",
        )
        self.table(["agent", "first pass ms", "passes", "clients built"], rows)
        self.profiles(figure.get("profiles") or {}, samples)

    def profiles(self, profiles: dict, samples: dict) -> None:
        for label, profile in profiles.items():
            if not profile or not profile["samples"]:
                continue
            total = profile["samples"]
            passes = profile.get("passes") or samples.get(label, {}).get("n")
            self.add(
                f"Profile of the agent's passes, {label}: py-spy record --gil at 1000 Hz "
                f"during {passes} more passes, {total} samples (a sample counts only "
                "while a thread of the agent holds the GIL, so the shares are of its Python "
                "CPU time):",
                "",
            )
            rows = [[group, f"{100 * count / total:.0f}%"] for group, count in
                    profile["groups"].items()]  # fmt: skip
            rows += [[f"`{name}`", f"{100 * count / total:.0f}%"] for name, count in
                     profile["top"] if not _is_wrapper(name)]  # fmt: skip
            self.table(["frames", "share of samples"], rows)

    def pulls(self) -> None:
        figure = self.figures.get("pulls")
        if not figure:
            return
        samples = figure["samples"]
        base = median(samples.get("docker pull, ecr-agent's auths entry"))
        self.add(
            "## Figure 6: `docker pull` of a present image",
            "",
            "The image is already in the daemon, so the pull checks the manifest with the "
            "registry and ends with `Image is up to date`. The docker CLI runs inside the "
            "namespace. With ecr-agent's `auths` entry it reads the config file; with "
            "`credHelpers` it runs docker-credential-ecr-login, which calls the ECR API "
            "(cold: its cache directory removed before the pull) or reads its cache (warm).",
            "",
        )
        rows = []
        for key, summary in samples.items():
            rows.append([key, ms(median(summary)), spread(summary), str(summary["n"]),
                         ratio(median(summary), base)])  # fmt: skip
        self.table(["variant", "median ms", "min-max ms", "n", "ratio to auths"], rows)

    def token_calls(self) -> None:
        figure = self.figures.get("token_calls")
        if not figure:
            return
        scale = figure["scale"]
        renewal = figure["renewal"]
        self.add(
            "## Figure 7: token calls per day, 1 region x 5 accounts, default policy",
            "",
            f"Time runs {scale:g} times faster: a day lasts {figure['day_seconds']:g} s and "
            f"tokens last {figure['token_lifetime_seconds']:g} s instead of 12 h. ecr-agent "
            "keeps the default policy with every duration divided by the same factor "
            f"(min_interval {renewal['min_interval'] * 1000:.1f} ms, jitter "
            f"{renewal['jitter'] * 1000:.1f} ms, lifetime_fraction "
            f"{renewal['lifetime_fraction']}). docker-credential-ecr-login is asked for each "
            f"of the 5 registries every {figure['pull_every_seconds']:g} s (a pull from each "
            "every 30 minutes), with one cache directory throughout. The DIY cron job runs "
            f"every {figure['cron_every_seconds']:g} s (`0 */6 * * *`), one "
            "`aws ecr get-login-password` per account, for the first "
            f"{figure['diy_days']} days. Calls are counted at the emulator by User-Agent; "
            "day 1 starts when the agents have sent READY=1.",
            "",
        )
        rows = []
        for client, summary in figure["per_day"].items():
            if client.startswith("DIY"):
                days = figure["diy_days"]
                rows.append([client, f"{summary['median']:g}", f"(mean of {days} days)", str(days)])
                continue
            rows.append([client, f"{summary['median']:g}", spread(summary, 1, 0),
                         str(summary["n"])])  # fmt: skip
        self.table(["client", "calls per day (median)", "min-max", "days"], rows)

    def endurance(self) -> None:
        figure = self.figures.get("endurance")
        if not figure:
            return
        renewals = figure["renewals"]
        self.add(
            f"## Figure 8: memory and descriptors over {renewals:,} renewals",
            "",
            "One running agent per set (config file target and daemon login check), renewed "
            f"{renewals:,} times back to back with SIGUSR1; every token carries a new "
            "password, so every renewal rewrites the config file and logs in to the daemon. "
            "The first sample is taken after READY=1, before the first SIGUSR1.",
            "",
        )
        for name, points in figure["series"].items():
            first, last = points[0], points[-1]
            growth = last["rss_kib"] - first["rss_kib"]
            after_100 = next((p for p in points if p["renewals"] >= 100), first)
            late = last["rss_kib"] - after_100["rss_kib"]
            rows = [
                [str(p["renewals"]), f"{p['rss_kib'] / 1024:.2f}",
                 f"{p['rss_anon_kib'] / 1024:.2f}", str(p["descriptors"]), str(p["threads"])]
                for p in points
            ]  # fmt: skip
            self.add(f"{name}:", "")
            self.table(["renewals", "VmRSS MiB", "RssAnon MiB", "open fds", "threads"], rows)
            self.add(
                f"Growth {first['renewals']}→{last['renewals']}: {growth} KiB; "
                f"{after_100['renewals']}→{last['renewals']}: {late} KiB; descriptors "
                f"{first['descriptors']}→{last['descriptors']}. Median pass "
                f"{ms(figure['pass_seconds'][name]['median'])} ms.",
                "",
            )
            self.goal(
                "RSS growth ≤ 1 MB over 2,000 renewals",
                name,
                growth,
                GOAL_GROWTH_KIB,
                f"{growth} KiB over {last['renewals'] - first['renewals']} renewals",
            )

    def import_times(self) -> None:
        breakdown = self.results.get("import_times")
        if not breakdown:
            return
        self.add(
            "## Import time",
            "",
            "`python -X importtime`, one run each; cumulative time of the top-level imports "
            "by package, in ms (ecr-agent imports boto3 when it builds its first client and "
            "the Docker SDK when the daemon target first runs, so those show at top level).",
            "",
        )
        rows = []
        for label, entry in breakdown.items():
            top = ", ".join(f"{name} {seconds * 1000:.0f}" for name, seconds in entry["top"][:5])
            rows.append([label, f"{entry['total'] * 1000:.0f}", top])
        self.table(["run", "total ms", "largest"], rows)

    def header(self) -> None:
        meta = self.meta
        machine = meta["machine"]
        self.add(
            "# Benchmarks",
            "",
            "ecr-agent against the two usual alternatives on one local testbed: a cron job "
            "running `aws ecr get-login-password | docker login`, and Docker's "
            "docker-credential-ecr-login helper (`credHelpers`). This file is written by "
            "`make bench` (benchmarks/run.sh); run it again rather than editing it.",
            "",
            f"Run {meta['started']}, {meta['minutes']} min, arguments: "
            f"`{meta['arguments'] or '(defaults)'}`.",
            "",
            f"Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB, "
            f"kernel {machine['kernel']}, {machine['os']}. Load average (1, 5, 15 min) at the "
            f"start {meta['loadavg_start']}, at the end {meta['loadavg_end']}.",
            "",
        )

    def versions(self) -> None:
        self.add("## Versions", "")
        packages = ["python", "boto3", "botocore", "docker", "requests", "urllib3", "sdnotify"]
        rows = []
        for name, info in self.meta["sets"].items():
            rows.append([name, self.meta["pythons"][name]] + [str(info.get(p)) for p in packages])
        self.table(["set", "interpreter", *packages], rows)
        tools = self.meta["tools"]
        self.add(
            "The newest set is a virtual environment with the current PyPI releases; the "
            "Debian 12 set is /usr/bin/python3 with Debian's python3-boto3, python3-docker "
            "and python3-sdnotify. ecr-agent runs from this tree in both (PYTHONPATH).",
            "",
        )
        self.table(["tool", "version"], [[k, str(v)] for k, v in tools.items()])

    def testbed(self) -> None:
        self.add("## Testbed", "")
        if self.meta.get("moto_only"):
            self.add(
                "**This run used --moto-only**: moto and benchmarks/emulator.py on "
                "127.0.0.1 over plain HTTP, no network namespace, no Docker daemon, no "
                "registry and no credential helper. The figures that need them are missing "
                "and the rest use the config file target only.",
                "",
            )
            return
        self.add(
            "- tests/e2e/rig.py builds a network namespace with moto, Debian's "
            "docker-registry serving the ECR registry host over TLS, and a private dockerd. "
            "benchmarks/testbed.py adds `api.ecr.<region>.amazonaws.com` for 20 regions to "
            "the namespace's hosts file, pointing at benchmarks/emulator.py, which serves "
            "HTTPS with a certificate from the rig's CA and forwards to moto. Every client "
            "(ecr-agent, the floor, the AWS CLI, the credential helper) reaches the ECR API "
            "there over TLS, with AWS_CA_BUNDLE set to the rig's CA; the helper has no "
            "endpoint setting and finds it by name.",
            "- Every token carries a new password, as ECR's do. The registry's htpasswd "
            f"uses bcrypt cost {BCRYPT_COST}, which checks only the first 72 bytes, so it "
            "accepts every rotated password. The e2e rig's cost 10 adds about 0.1 s of "
            "registry CPU to each login and pull, for every alternative alike, which ECR's "
            "own registry does not spend.",
            "- The emulator sets TCP_NODELAY, so a response is not held back by Nagle's "
            "algorithm waiting for a delayed ACK (40 ms on Linux).",
            "- Variants run in alternation (A B C A B C ...) after one untimed warm-up "
            "round; medians with min-max and n; ratios are of medians from this run.",
            "- All processes get an explicit environment: stand-in AWS keys, "
            "AWS_EC2_METADATA_DISABLED=true, no AWS config files.",
            "",
        )

    def commands(self) -> None:
        commands = self.results.get("commands", {})
        if not commands:
            return
        self.add("## Exact commands", "")
        self.add("```")
        for label, command in commands.items():
            self.add(f"# {label}", command.strip())
        self.add("```", "")
        configs = self.results.get("configs", {})
        for name in ("daemon-newest", "file-newest"):
            if name in configs:
                self.add(
                    f"Configuration `{name}`:", "", "```toml", configs[name].strip(), "```", ""
                )

    def summary(self) -> list[str]:
        lines = ["## Goals", ""]
        lines.append("| goal | case | measured | result |")
        lines.append("|---|---|---|---|")
        for goal, case, text, result in self.goals:
            lines.append(f"| {goal} | {case} | {text} | {result} |")
        lines.append("")
        return lines


def _is_wrapper(frame: str) -> bool:
    """Tell whether a profile frame only wraps others: thread start-up, runpy, <module>."""
    return any(marker in frame for marker in ("threading.py", "<frozen runpy>", "<module>"))


class Limits:
    """Paragraphs on what limits each goal this run did not meet, from the run's numbers."""

    def __init__(self, report: Report):
        self.report = report
        self.figures = report.figures
        self.unmet = {(goal, case) for goal, case, _, result in report.goals if result != "met"}

    def lines(self) -> list[str]:
        if not self.unmet:
            return ["## Goals not met", "", "None in this run.", ""]
        lines = ["## What limits the goals not met", ""]
        for paragraph in (self.oneshots(), self.regions(), self.growth(), self.idle()):
            if paragraph:
                lines += [paragraph, ""]
        return lines

    def cases(self, goal_prefix: str) -> list[str]:
        return sorted(case for goal, case in self.unmet if goal.startswith(goal_prefix))

    def oneshots(self) -> str | None:
        cases = self.cases("cold one-shot") + self.cases("start to READY")
        figure = self.figures.get("oneshots")
        if not cases or not figure:
            return None
        samples = figure["samples"]
        parts = []
        for name in self.report.sets:
            if not any(case.endswith(f"({name})") for case in cases):
                continue
            refresh = [median(samples.get(f"refresh {k}-{name}")) for k in ("daemon", "file")]
            ready = [median(samples.get(f"run to READY {k}-{name}")) for k in ("daemon", "file")]
            floor = median(samples.get(f"floor {name}"))
            imports = self.report.results.get("import_times", {})
            if None in refresh or None in ready:
                agent_imports = imports.get(f"ecr-agent refresh, file ({name})", {})
                floor_imports = imports.get(f"floor ({name})", {})
                parts.append(
                    f"With the {name} set ({', '.join(cases)}), the agent's imports took "
                    f"{ms(agent_imports.get('total'))} ms against the floor's "
                    f"{ms(floor_imports.get('total'))} ms (import-time table), and a refresh "
                    f"{ms(refresh[1])} ms against the floor's {ms(floor)} ms."
                )
                continue
            label = f"ecr-agent refresh, daemon ({name})"
            docker_import = dict(imports.get(label, {}).get("top", [])).get("docker")
            targets = median(samples.get(f"renewal targets ({name})"))
            parts.append(
                f"With the {name} set, `file`, which does the floor's work, refreshes in "
                f"{ratio(refresh[1], floor)} of the floor's time. `daemon` adds the login "
                "check, which the floor does not make: "
                f"{ms(refresh[0] - refresh[1])} ms more than `file` for a refresh and "
                f"{ms(ready[0] - ready[1])} ms more to READY=1, made of the Docker SDK's import "
                f"({ms(docker_import)} ms in the import-time table; the floor pays it too, "
                "without using the SDK), the API client's version check (GET /version) and "
                "dockerd's login to the registry (POST /auth). In the running agent the "
                f"targets' part of a renewal, config file and login check, is {ms(targets)} ms."
            )
        return " ".join(parts) or None

    def regions(self) -> str | None:
        cases = self.cases("20 regions")
        figure = self.figures.get("regions")
        if not cases or not figure:
            return None
        mode = list(figure["modes"])[-1]
        parts = []
        for name in self.report.sets:
            if not any(case.endswith(f"({name})") for case in cases):
                continue
            cpu = figure["cpu_per_pass"]
            one = cpu.get(f"1 regions, {mode} ({name})")
            twenty = cpu.get(f"20 regions, {mode} ({name})")
            per_region = (twenty - one) / 19 if one is not None and twenty is not None else None
            profile = (figure.get("profiles") or {}).get(f"20 regions, {mode} ({name})")
            shares = ""
            if profile and profile["samples"]:
                groups = profile["groups"]
                total = profile["samples"]
                shares = (
                    " The profile puts "
                    + ", ".join(f"{100 * n / total:.0f}% in {g}" for g, n in groups.items())
                    + "."
                )
            parts.append(
                f"With the {name} set, a pass over 20 regions costs the agent {ms(twenty)} ms "
                f"of CPU against {ms(one)} ms for one region, {ms(per_region)} ms per extra "
                "region. The calls start together and wait for the latency together, but "
                "their CPU work runs one thread at a time under the GIL, so that work adds to "
                f"the {figure['modes'][mode]['delay'] * 1000:g} ms of latency.{shares}"
            )
        return " ".join(parts) or None

    def growth(self) -> str | None:
        cases = self.cases("RSS growth")
        figure = self.figures.get("endurance")
        if not cases or not figure:
            return None
        parts = []
        for name in cases:
            points = figure["series"].get(name) or []
            if len(points) < 3:
                continue
            steps = [
                f"{(b['rss_kib'] - a['rss_kib']) / (b['renewals'] - a['renewals']):.2f} KiB "
                f"per renewal from {a['renewals']} to {b['renewals']}"
                for a, b in itertools.pairwise(points)
            ]
            same = all(points[0][key] == points[-1][key] for key in ("descriptors", "threads"))
            ending = " Descriptors and threads stayed the same." if same else ""
            parts.append(f"With the {name} set, resident memory grew {', '.join(steps)}.{ending}")
        return " ".join(parts) or None

    def idle(self) -> str | None:
        cases = self.cases("idle")
        figure = self.figures.get("idle")
        if not cases or not figure:
            return None
        return (
            "Idle goals not met: " + ", ".join(cases) + ". See figure 4 for VmRSS, RssAnon "
            "and CPU per process."
        )


def render(results: dict, meta: dict) -> str:
    report = Report(results, meta)
    report.header()
    body_start = len(report.lines)
    report.testbed()
    report.oneshots()
    report.idle()
    report.regions()
    report.pulls()
    report.token_calls()
    report.endurance()
    report.import_times()
    report.versions()
    report.commands()
    summary = report.summary() + Limits(report).lines()
    lines = report.lines[:body_start] + summary + report.lines[body_start:]
    return "\n".join(lines).rstrip() + "\n"
