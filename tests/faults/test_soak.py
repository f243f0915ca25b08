"""Soak: thousands of renewals by one ``ecr-agent run``; memory, descriptors and threads
stay flat.

Tokens from the proxy expire after 2 s, so the agent also renews on its own, and SIGUSR1
drives renewals back to back. One renewal in 50 meets a failing endpoint. Two reloads
(SIGHUP) come during the warm-up: each builds new boto3 sessions, which raises RSS once
by a few MiB until the allocator reuses the freed memory, so the samples start after them.
``ECR_AGENT_SOAK=full`` runs 2,000 renewals; the normal suite runs 200.
"""

import os
import signal
import time
from pathlib import Path

from tests.aws_proxy import AwsProxy
from tests.faults.harness import AgentUnderTest, process_memory, wait_until

FULL = os.environ.get("ECR_AGENT_SOAK") == "full"
RENEWALS = 2000 if FULL else 200
WARM_UP = max(RENEWALS // 10, 100)  # renewals before the first sample
RELOADS = (25, 75)  # renewals after which a SIGHUP comes, all within the warm-up
MAX_RSS_GROWTH_KIB = 16 * 1024 if FULL else 8 * 1024  # after the warm-up
SOAK_RENEWAL = {"min_interval": "100ms", "lifetime_fraction": 0.5}


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def steady_sample(pid: int) -> tuple[int, int, int]:
    """Return RSS KiB and the fewest descriptors and threads seen in half a second.

    A renewal that runs at that moment holds a token-call thread or a temporary file
    for a few milliseconds; the minimum leaves those out, and a leak still shows.
    """
    samples = []
    for _ in range(5):
        time.sleep(0.1)
        samples.append((*process_memory(pid), threads_of(pid)))
    rss = samples[-1][0]
    return rss, min(fds for _, fds, _ in samples), min(threads for _, _, threads in samples)


def test_soak_memory_and_descriptors_flat(tmp_path, moto):
    proxy = AwsProxy(moto.url, expires_in=2, rotate_passwords=True).start()
    agent = AgentUnderTest(tmp_path, proxy.url)
    agent.write(renewal=SOAK_RENEWAL, log_level="info")
    running = agent.start("run")
    samples = []
    started = time.monotonic()
    try:
        running.wait_started()
        assert wait_until(lambda: agent.password_of() is not None)
        for renewal in range(1, RENEWALS + 1):
            if renewal % 50 == 10:  # away from the samples, which come after every 100th
                proxy.fail("500", count=3)
            calls = proxy.token_calls()
            running.signal(signal.SIGUSR1)
            assert wait_until(lambda c=calls: proxy.token_calls() > c, 60), running.log()[-2000:]
            if renewal in RELOADS:
                running.signal(signal.SIGHUP)
            if renewal >= WARM_UP and renewal % 100 == 0:
                samples.append(steady_sample(running.pid))
        assert wait_until(lambda: agent.password_of() == proxy.last_password())
        assert running.stop() == 0
    finally:
        agent.cleanup()
        proxy.stop()

    duration = time.monotonic() - started
    (rss_first, fds_first, threads_first), (rss_last, fds_last, threads_last) = (
        samples[0],
        samples[-1],
    )
    rss_max = max(rss for rss, _, _ in samples)
    log = running.log()
    print(
        f"soak: {RENEWALS} renewals by SIGUSR1 and {proxy.token_calls()} token calls "
        f"in {duration:.0f} s; after {WARM_UP} renewals RSS {rss_first} KiB, "
        f"{fds_first} fds, {threads_first} threads; at the end RSS {rss_last} KiB, "
        f"{fds_last} fds, {threads_last} threads; RSS at most {rss_max} KiB; "
        f"RSS every 100 renewals: {[rss for rss, _, _ in samples]}"
    )
    assert log.count("reloading configuration") == len(RELOADS)
    assert "token request failed" in log
    assert "Traceback" not in log
    assert fds_last <= fds_first
    assert threads_last <= threads_first + 1
    assert rss_last - rss_first <= MAX_RSS_GROWTH_KIB
    assert rss_max - rss_first <= MAX_RSS_GROWTH_KIB
