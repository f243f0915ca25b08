"""The renewal loop: fetch tokens when due, publish them to every target, keep state."""

import concurrent.futures
import logging
import os
import random
import select
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ecr_agent import logs, renewal
from ecr_agent.config import Config, load_config
from ecr_agent.credentials import Credentials
from ecr_agent.errors import ConfigError, TokenError
from ecr_agent.notify import Notifier
from ecr_agent.state import (
    RegistryState,
    TargetState,
    isoformat,
    load_registries,
    write_state,
)
from ecr_agent.targets import Outcome, Target
from ecr_agent.tokens import TokenClient, TokenRequest, plan_requests

log = logging.getLogger(__name__)

# Token calls of one pass run at once up to this many, so that a pass over many regions
# takes about as long as its slowest call.
MAX_CONCURRENT_CALLS = 32
FIRST_PASS_EXTENSION = 30.0  # seconds asked of systemd at a time while the first pass runs
STOP_POLL = 0.25  # seconds between checks for a stop request while token calls run
IDLE_WAKEUP = 60.0  # maximum sleep, so a wall-clock jump is noticed within a minute

# The flag each handled signal sets; the service loop acts on the flags.
SIGNAL_FLAGS = {
    signal.SIGTERM: "stop_requested",
    signal.SIGINT: "stop_requested",
    signal.SIGHUP: "reload_requested",
    signal.SIGUSR1: "renew_requested",
}


def build_targets(config: Config, on_result=None) -> list[Target]:
    """Create the targets that the configuration names, config files first."""
    targets: list[Target] = []
    docker = config.docker
    if docker.config_files or docker.users:
        from ecr_agent.docker_config import DockerConfigTarget

        targets.append(DockerConfigTarget(docker))
    if docker.verify_login or docker.swarm_services:
        from ecr_agent.docker_daemon import DockerDaemonTarget

        targets.append(DockerDaemonTarget(docker))
    if config.rancher is not None:
        from ecr_agent.rancher import RancherTarget

        renewal_settings = config.renewal
        targets.append(
            RancherTarget(
                config.rancher,
                retry_initial=renewal_settings.retry_initial,
                retry_max=renewal_settings.retry_max,
                on_result=on_result,
            )
        )
    return targets


class Agent:
    """Renews the tokens of one configuration and publishes them to its targets."""

    def __init__(
        self,
        config: Config,
        notifier: Notifier | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        target_factory=build_targets,
        token_client: TokenClient | None = None,
    ):
        self.config = config
        self.notifier = notifier or Notifier(environ={})
        self.wall_clock = wall_clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.target_factory = target_factory
        self.token_client = token_client or TokenClient(wall_clock)
        self.lock = threading.RLock()
        self.signal_pipe: tuple[int, int] | None = None
        self.previous_handlers: dict = {}
        self.stop_requested = False
        self.reload_requested = False
        self.renew_requested = False
        self.ready = False

        self.registries: dict[str, RegistryState] = {}
        self.current: dict[str, Credentials] = {}
        self.due: dict[TokenRequest, datetime] = {}
        self.failures: dict[TokenRequest, int] = {}
        self.target_due: dict[str, datetime] = {}
        self.target_failures: dict[str, int] = {}
        self.last_error: str | None = None
        self.one_shot = False
        # Expiry and history survive a restart; target outcomes are this process's own.
        self.registries = load_registries(config.agent.state_dir)
        self._apply(config)

    # -- configuration -------------------------------------------------------------

    def _apply(self, config: Config) -> None:
        self.config = config
        known = self.registries
        self.registries = {}
        for registry in config.registries:
            state = known.get(registry.host) or RegistryState(
                registry.host, registry.account, registry.source.region
            )
            state.aliases = list(registry.aliases)
            # The new targets report afresh; outcomes of removed ones must not linger.
            state.targets = {}
            self.registries[registry.host] = state
        self.current = {h: c for h, c in self.current.items() if h in self.registries}

        now = self.wall_clock()
        old_due, old_failures = self.due, self.failures
        self.requests = plan_requests(config.registries)
        self.due = {request: old_due.get(request, now) for request in self.requests}
        self.failures = {request: old_failures.get(request, 0) for request in self.requests}
        self.targets = self.target_factory(config, self._record_async)
        self.target_due, self.target_failures = {}, {}
        for secret in _config_secrets(config):
            logs.secret_filter.add(secret)

    def reload(self) -> bool:
        """Load the configuration file again; keep the running one if the new one is bad."""
        self.notifier.reloading()
        try:
            config = load_config(self.config.path)
        except ConfigError as error:
            log.error("reload rejected, keeping the running configuration: %s", error)
            self.last_error = f"reload rejected: {'; '.join(error.problems)}"
            self.notifier.ready(self.status_line())
            return False

        log.info("reloading configuration from %s", config.path)
        self._close_targets()
        self.token_client.reset()
        logs.set_level(config.agent.log_level)
        self._apply(config)
        self.last_error = None
        if self.current:
            self._publish(dict(self.current))
        self._save_state()
        self.notifier.ready(self.status_line())
        return True

    # -- one pass --------------------------------------------------------------------

    def renew(self, force: bool = False) -> bool:
        """Renew every due token (every token with ``force``) and publish the results.

        Returns False if a token call, a registry or a target failed.
        """
        started = time.perf_counter()
        now = self.wall_clock()
        requests = [r for r in self.requests if force or self.due[r] <= now]
        if not requests:
            return True

        results = self._fetch(requests)
        if results is None:
            return False
        fetched = time.perf_counter()
        self._progress()
        ok = True
        fresh: dict[str, Credentials] = {}
        with self.lock:
            for request, result in results:
                ok &= self._record_tokens(request, result, fresh)

            if fresh:
                ok &= self._publish(fresh)
            published = time.perf_counter()
            self._save_state()
        self.notifier.status(self.status_line())
        self._log_pass_time(len(requests), started, fetched, published)
        return ok

    @staticmethod
    def _log_pass_time(requests: int, started: float, fetched: float, published: float):
        finished = time.perf_counter()
        log.debug(
            "renewal pass of %d token requests took %.1f ms: token calls %.1f ms, "
            "targets %.1f ms, state file %.1f ms",
            requests,
            (finished - started) * 1000,
            (fetched - started) * 1000,
            (published - fetched) * 1000,
            (finished - published) * 1000,
        )

    def _fetch(self, requests):
        """Run the token calls in daemon threads and wait for them.

        Daemon threads let the process exit on SIGTERM while a call still hangs; the wait
        returns None as soon as a stop is requested.
        """
        self.token_client.prepare(requests)
        slots = threading.BoundedSemaphore(MAX_CONCURRENT_CALLS)
        futures = {self._start_fetch(request, slots): request for request in requests}

        pending = set(futures)
        extended_at = None
        while pending:
            if self.stop_requested:
                return None
            if not self.ready and (extended_at is None or time.monotonic() - extended_at > 10):
                self.notifier.extend_timeout(FIRST_PASS_EXTENSION)
                extended_at = time.monotonic()
            _, pending = concurrent.futures.wait(pending, timeout=STOP_POLL)
        return [(futures[future], future.result()) for future in futures]

    def _start_fetch(self, request: TokenRequest, slots) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()

        def work():
            with slots:
                try:
                    future.set_result(self.token_client.fetch(request))
                except TokenError as error:
                    future.set_result(error)
                except Exception as error:  # a bug must not leave the pass waiting
                    log.exception("token request for %s failed unexpectedly", request.label)
                    future.set_result(TokenError(request.label, f"internal error: {error!r}"))

        threading.Thread(target=work, name=f"token {request.label}", daemon=True).start()
        return future

    def _record_tokens(self, request, result, fresh) -> bool:
        now = self.wall_clock()
        if isinstance(result, TokenError):
            self._record_failure(request, str(result), now)
            return False

        ok = True
        latest = None
        for registry in request.registries:
            state = self.registries[registry.host]
            credentials = result.credentials.get(registry.host)
            if credentials is None:
                self._record_registry_error(state, result.errors[registry.host], now)
                ok = False
                continue
            fresh[registry.host] = credentials
            self._record_success(state, credentials, now)
            latest = credentials

        if latest is None:
            reasons = "; ".join(dict.fromkeys(result.errors.values()))
            cause = f"the answer has no usable entry: {reasons}"
            self._record_failure(request, str(TokenError(request.label, cause)), now)
            return False
        self.failures[request] = 0
        due = renewal.renewal_time(
            latest.requested_at, latest.expires_at, now, self.config.renewal, self.rng
        )
        self._set_due(request, due)
        return ok

    def _record_success(self, state: RegistryState, credentials: Credentials, now) -> None:
        self.current[state.host] = credentials
        state.requested_at = isoformat(credentials.requested_at)
        state.expires_at = isoformat(credentials.expires_at)
        state.last_success = isoformat(now)
        state.failures = 0
        if credentials.is_expired(now):
            log.warning(
                "token for %s arrived already expired (expiresAt %s); written anyway",
                state.host,
                state.expires_at,
            )
        else:
            log.info("renewed %s, expires at %s", state.host, state.expires_at)

    def _record_registry_error(self, state: RegistryState, message: str, now) -> None:
        state.last_error = message
        state.last_error_at = isoformat(now)
        state.failures += 1
        self.last_error = f"{state.host}: {message}"
        log.error("renewal failed for %s: %s", state.host, message)

    def _record_failure(self, request: TokenRequest, message: str, now) -> None:
        self.failures[request] += 1
        delay = renewal.retry_delay(self.failures[request], self.config.renewal, self.rng)
        self._set_due(request, now + timedelta(seconds=delay))
        self.last_error = message
        for registry in request.registries:
            state = self.registries[registry.host]
            state.last_error = message
            state.last_error_at = isoformat(now)
            state.failures = self.failures[request]
        retry = "" if self.one_shot else f"; retry in {delay:.0f} s"
        log.error("%s; %s%s", message, self._validity(request, now), retry)

    def _validity(self, request: TokenRequest, now: datetime) -> str:
        expiries = [self._expires_at(registry.host) for registry in request.registries]
        expiries = [moment for moment in expiries if moment is not None]
        if not expiries:
            return "no earlier credentials are in place"
        soonest = min(expiries)
        if soonest <= now:
            return f"the credentials in place expired at {isoformat(soonest)}"
        return f"the credentials in place are valid until {isoformat(soonest)}"

    def _expires_at(self, host: str) -> datetime | None:
        """Return the expiry of the newest credentials of ``host``, also from an earlier run."""
        if host in self.current:
            return self.current[host].expires_at
        text = self.registries[host].expires_at
        return datetime.fromisoformat(text) if text else None

    def _set_due(self, request: TokenRequest, due: datetime) -> None:
        self.due[request] = due
        for registry in request.registries:
            self.registries[registry.host].next_renewal = isoformat(due)

    # -- targets -----------------------------------------------------------------------

    def _publish(self, fresh: dict[str, Credentials], targets=None) -> bool:
        hosts = dict(fresh)
        owner = {host: host for host in fresh}
        for host in fresh:
            for alias in self.registries[host].aliases:
                hosts[alias] = fresh[host]
                owner[alias] = host

        ok = True
        for target in self.targets if targets is None else targets:
            outcomes = target.publish(hosts)
            target_ok = self._record_outcomes(outcomes, owner, list(fresh))
            self._schedule_target_retry(target, target_ok)
            ok &= target_ok
            self._progress()
        return ok

    def _schedule_target_retry(self, target: Target, ok: bool) -> None:
        """Plan another publish to a target that failed, with the same backoff as tokens."""
        if ok:
            self.target_failures.pop(target.name, None)
            self.target_due.pop(target.name, None)
            return
        failures = self.target_failures.get(target.name, 0) + 1
        self.target_failures[target.name] = failures
        delay = renewal.retry_delay(failures, self.config.renewal, self.rng)
        self.target_due[target.name] = self.wall_clock() + timedelta(seconds=delay)
        if not self.one_shot:
            log.info("publishing to %s again in %.0f s", target.name, delay)

    def retry_targets(self) -> None:
        """Publish the current credentials again to each failed target that is due."""
        now = self.wall_clock()
        due = [t for t in self.targets if self.target_due.get(t.name, now) <= now]
        due = [t for t in due if t.name in self.target_due]
        if not due or not self.current:
            return
        with self.lock:
            self._publish(dict(self.current), due)
            self._save_state()
        self.notifier.status(self.status_line())

    def _record_async(self, outcomes: list[Outcome]) -> None:
        """Record outcomes that a target reports from its own thread (Rancher)."""
        with self.lock:
            owner = {host: host for host in self.registries}
            for host, state in self.registries.items():
                owner.update(dict.fromkeys(state.aliases, host))
            self._record_outcomes(outcomes, owner, list(self.registries))
            self._save_state()

    def _record_outcomes(self, outcomes, owner, batch) -> bool:
        now = isoformat(self.wall_clock())
        ok = True
        with self.lock:
            for outcome in outcomes:
                hosts = batch if outcome.host is None else [owner.get(outcome.host)]
                entry = TargetState(outcome.ok, now, outcome.error, outcome.warning)
                for host in hosts:
                    if host in self.registries:
                        self.registries[host].targets[outcome.target] = entry
                if outcome.error:
                    ok = False
                    self.last_error = f"{outcome.target}: {outcome.error}"
        return ok

    def _close_targets(self) -> None:
        for target in self.targets:
            try:
                target.close()
            except Exception:
                log.exception("closing target %s failed", target.name)

    # -- state and status -------------------------------------------------------------

    def _save_state(self) -> None:
        with self.lock:
            try:
                write_state(
                    self.config.agent.state_dir, self.registries, os.getpid(), self.wall_clock()
                )
            except OSError as error:
                log.error(
                    "writing the state file in %s failed: %s",
                    self.config.agent.state_dir,
                    error.strerror or error,
                )

    def status_line(self) -> str:
        now = self.wall_clock()
        expiries = {host: self._expires_at(host) for host in self.registries}
        valid = {host: moment for host, moment in expiries.items() if moment and moment > now}
        noun = "registry" if len(self.registries) == 1 else "registries"
        parts = [f"{len(valid)} of {len(self.registries)} {noun} valid"]
        if valid:
            host, soonest = min(valid.items(), key=lambda item: item[1])
            parts.append(f"soonest expiry {isoformat(soonest)} ({host})")
        if self.last_error:
            parts.append(f"last error: {self.last_error}")
        return "; ".join(parts).replace("\n", " ")

    def _progress(self) -> None:
        if self.ready:
            self.notifier.watchdog()

    # -- the service ------------------------------------------------------------------

    def run(self) -> int:
        """Renew forever until SIGTERM or SIGINT; return the exit status."""
        self._install_signal_handlers()
        log.info(
            "starting: %d registries in %d token requests, targets: %s",
            len(self.registries),
            len(self.requests),
            ", ".join(target.name for target in self.targets) or "none",
        )
        self.renew(force=True)
        self.ready = True
        self.notifier.ready(self.status_line())

        while not self.stop_requested:
            self._handle_requests()
            if self.stop_requested:
                break
            self._sleep(self._sleep_seconds())
            self.notifier.watchdog()
            if not self.stop_requested:
                self.renew()
                self.retry_targets()

        log.info("stopping")
        self.notifier.stopping()
        self._close_targets()
        self._remove_signal_handlers()
        return 0

    def _handle_requests(self) -> None:
        if self.reload_requested:
            self.reload_requested = False
            self.reload()
        if self.renew_requested:
            self.renew_requested = False
            log.info("renewing every registry now (SIGUSR1)")
            self.renew(force=True)

    def _sleep_seconds(self) -> float:
        now = self.wall_clock()
        planned = [*self.due.values(), *self.target_due.values()]
        soonest = min(planned, default=now + timedelta(seconds=IDLE_WAKEUP))
        seconds = max((soonest - now).total_seconds(), 0.0)
        limit = self.notifier.watchdog_interval or IDLE_WAKEUP
        return min(seconds, limit, IDLE_WAKEUP)

    def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if a handled signal arrives, and note the signals.

        Python runs a signal handler in the main thread between two bytecodes, also while
        that thread holds a lock, so a handler that takes a lock (threading.Event.set does)
        can deadlock. The handlers therefore only set flags. To end the wait, Python's
        C-level handler writes each signal number to the pipe given to set_wakeup_fd,
        whichever thread the kernel delivered the signal to.
        """
        reader = self.signal_pipe[0]
        readable, _, _ = select.select([reader], [], [], seconds)
        if not readable:
            return
        try:
            while data := os.read(reader, 512):
                for signum in data:
                    self._note_signal(signum)
        except BlockingIOError:
            pass

    def _note_signal(self, signum: int, frame=None) -> None:
        flag = SIGNAL_FLAGS.get(signum)
        if flag is not None:
            setattr(self, flag, True)

    def _install_signal_handlers(self) -> None:
        reader, writer = os.pipe()
        os.set_blocking(reader, False)
        os.set_blocking(writer, False)
        self.signal_pipe = (reader, writer)
        signal.set_wakeup_fd(writer, warn_on_full_buffer=False)
        for signum in SIGNAL_FLAGS:
            self.previous_handlers[signum] = signal.signal(signum, self._note_signal)

    def _remove_signal_handlers(self) -> None:
        signal.set_wakeup_fd(-1)
        for signum, handler in self.previous_handlers.items():
            signal.signal(signum, handler)
        for descriptor in self.signal_pipe or ():
            os.close(descriptor)
        self.signal_pipe = None

    # -- one-shot refresh -------------------------------------------------------------

    def refresh(self, flush_timeout: float = 60.0) -> bool:
        """Renew everything once and wait for targets that publish in the background."""
        self.one_shot = True
        ok = self.renew(force=True)
        for target in self.targets:
            flush = getattr(target, "flush", None)
            if flush is not None:
                outcomes = flush(flush_timeout)
                ok &= all(outcome.ok for outcome in outcomes)
        self._save_state()
        self._close_targets()
        return ok


def _config_secrets(config: Config):
    if config.rancher is not None:
        yield config.rancher.secret_key
    yield os.environ.get("AWS_SECRET_ACCESS_KEY")
    yield os.environ.get("AWS_SESSION_TOKEN")
