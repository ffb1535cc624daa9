"""One backoff policy for every wait-and-try-again: lock timeouts, the lease wait, the operator's retries.

:class:`Backoff` computes the delay before attempt ``n + 1``; it is also a ``tenacity`` wait
strategy, so the executor and the lease loop hand it to :class:`tenacity.AsyncRetrying`, and the
operator passes the same delay to Kopf's ``TemporaryError(delay=...)``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import tenacity


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with multiplicative jitter: ``min(max_s, base_s * 2**(n-1)) * U[1-jitter, 1+jitter)``.

    Jitter spreads appliers that collided on a lock, so they do not retry in lockstep.
    """

    base_s: float
    max_s: float
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.max_s <= 0 or not 0 <= self.jitter < 1:
            raise ValueError(f"invalid backoff: base {self.base_s}s, max {self.max_s}s, jitter {self.jitter}")

    def ceiling(self, failures: int) -> float:
        """The delay without jitter after ``failures`` failed attempts (1 or more)."""
        return min(self.max_s, self.base_s * 2 ** min(max(failures, 1) - 1, 60))

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """The delay after ``failures`` failed attempts; ``rand`` (uniform in [0, 1)) is injectable for tests."""
        return self.ceiling(failures) * (1 - self.jitter + 2 * self.jitter * rand())

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        """The tenacity wait strategy: the delay after the attempt that just failed."""
        return self.delay(retry_state.attempt_number)
