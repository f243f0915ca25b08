"""Renewal timing: when to renew a token and how long to wait after a failure.

Both functions are pure: the clock and the random source are arguments.
"""

import random as _random
from datetime import datetime, timedelta

from ecr_agent.config import RenewalSettings

# Lower bound on any retry delay, so an endpoint that fails at once cannot be called more
# than once a second by one token request, whatever retry_initial is.
MIN_RETRY_DELAY = 1.0


def renewal_time(
    requested_at: datetime,
    expires_at: datetime,
    now: datetime,
    settings: RenewalSettings,
    rng: _random.Random,
) -> datetime:
    """Return when to renew a token requested at ``requested_at``.

    The plan is ``requested_at + lifetime_fraction * lifetime`` plus up to ``jitter``,
    capped at ``expires_at``. It is never earlier than ``min_interval`` after the request
    nor earlier than ``now``, so a token that arrives already expired is renewed after
    ``min_interval`` instead of at once.
    """
    lifetime = max(expires_at - requested_at, timedelta(0))
    planned = requested_at + lifetime * settings.lifetime_fraction
    planned += timedelta(seconds=rng.uniform(0, settings.jitter))
    planned = min(planned, expires_at)

    earliest = requested_at + timedelta(seconds=settings.min_interval)
    return max(planned, earliest, now)


def retry_delay(failures: int, settings: RenewalSettings, rng: _random.Random) -> float:
    """Return the seconds to wait after ``failures`` consecutive failures (1 or more).

    Capped exponential backoff with full jitter: a uniform draw between 0 and
    ``min(retry_max, retry_initial * 2 ** (failures - 1))``, at least MIN_RETRY_DELAY.
    """
    exponent = min(max(failures - 1, 0), 32)
    cap = min(settings.retry_max, settings.retry_initial * 2**exponent)
    return max(MIN_RETRY_DELAY, rng.uniform(0, cap))
