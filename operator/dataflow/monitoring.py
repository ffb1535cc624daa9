"""Migration alerts: a JSON POST to the monitoring webhook, bounded in time, never failing a migration.

``migration_config["monitoring"]`` is ``True`` (monitoring on, no webhook) or a dict of
``enabled``, ``webhook_url``, ``alert_on_failure``, ``alert_on_rollback`` and
``performance_threshold`` (milliseconds: a migration slower than this is alerted). An alert is sent
after the migration has committed or failed, so it cannot hold a lock or a transaction open; each
attempt has a timeout, failures are retried a few times (tenacity), and whatever still fails is
logged, never raised.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
import tenacity
import yarl

log = logging.getLogger("dataflow.monitoring")

MONITORING_KEYS = ("enabled", "webhook_url", "alert_on_failure", "alert_on_rollback", "performance_threshold")
ATTEMPT_TIMEOUT_S = 5.0  # one POST
ATTEMPTS = 3  # POSTs per alert


@dataclass(frozen=True)
class Monitoring:
    """The monitoring settings; disabled unless ``migration_config["monitoring"]`` says otherwise."""

    enabled: bool = False
    webhook_url: str | None = None
    alert_on_failure: bool = True
    alert_on_rollback: bool = True
    performance_threshold_ms: float | None = None

    @property
    def posts(self) -> bool:
        return self.enabled and self.webhook_url is not None


def monitoring_problem(value: Any) -> str | None:
    """What is wrong with a ``monitoring`` value, or None."""
    if isinstance(value, (bool, Monitoring)):
        return None
    if not isinstance(value, dict):
        return f"must be True, False or a dict of {', '.join(MONITORING_KEYS)}, not {value!r}"
    for key, given in value.items():
        if key not in MONITORING_KEYS:
            return f"unknown key {key!r}; known: {', '.join(MONITORING_KEYS)}"
        if key == "webhook_url":
            ok = given is None or (isinstance(given, str) and given.startswith(("http://", "https://")))
            if not ok:
                return f"webhook_url must be an http:// or https:// URL, not {given!r}"
        elif key == "performance_threshold":
            ok = given is None or (
                isinstance(given, (int, float)) and not isinstance(given, bool) and given >= 0
            )
            if not ok:
                return f"performance_threshold must be milliseconds (a number >= 0), not {given!r}"
        elif not isinstance(given, bool):
            return f"{key} must be True or False, not {given!r}"
    return None


def to_monitoring(value: bool | dict[str, Any] | Monitoring) -> Monitoring:
    if isinstance(value, Monitoring):
        return value
    if isinstance(value, bool):
        return Monitoring(enabled=value)
    threshold = value.get("performance_threshold")
    return Monitoring(
        enabled=value.get("enabled", True),
        webhook_url=value.get("webhook_url"),
        alert_on_failure=value.get("alert_on_failure", True),
        alert_on_rollback=value.get("alert_on_rollback", True),
        performance_threshold_ms=None if threshold is None else float(threshold),
    )


async def post_json(url: str, body: dict[str, Any], what: str) -> bool:
    """POST ``body`` as JSON, with a timeout per attempt and retries; whether it was delivered.

    Never raises: a monitoring endpoint that is down must not fail what it reports on.
    """
    retrying = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        wait=tenacity.wait_exponential(multiplier=0.2, max=2.0),
        retry=tenacity.retry_if_exception_type((aiohttp.ClientError, TimeoutError)),
        reraise=True,
    )
    timeout = aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async for attempt in retrying:
                with attempt:
                    async with session.post(url, json=body) as response:
                        response.raise_for_status()
        return True
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.warning("could not deliver %s to %s: %s: %s", what, _where(url), type(exc).__name__, exc)
        return False


def _where(url: str) -> str:
    """The URL without credentials or query (a webhook token must not reach the logs)."""
    try:
        return str(yarl.URL(url).with_user(None).with_query(None).with_fragment(None))
    except ValueError:
        return "the webhook"


class Monitor:
    """Decides which events become alerts and sends them to the webhook."""

    def __init__(self, settings: Monitoring, slow_threshold_ms: float | None = None) -> None:
        self.settings = settings
        self.slow_threshold_ms = slow_threshold_ms

    async def migration_finished(
        self, *, version: str | None, outcome: str, reason: str, duration_ms: float | None, notify: bool
    ) -> list[str]:
        """Alert on what the settings ask for; returns the kinds of alert delivered."""
        if (
            self.slow_threshold_ms is not None
            and duration_ms is not None
            and duration_ms > self.slow_threshold_ms
        ):
            log.warning(
                "slow migration: %s took %.0f ms (slow_migration_threshold %.0f ms)",
                version,
                duration_ms,
                self.slow_threshold_ms,
            )
        kinds = []
        s = self.settings
        if outcome == "Failed" and s.alert_on_failure:
            kinds.append("failure")
        if (
            s.performance_threshold_ms is not None
            and duration_ms is not None
            and duration_ms > s.performance_threshold_ms
        ):
            kinds.append("slow")
        if notify and outcome == "Applied":
            kinds.append("applied")
        return await self._send(
            kinds, version=version, outcome=outcome, reason=reason, duration_ms=duration_ms
        )

    async def rolled_back(self, version: str, success: bool, reason: str) -> list[str]:
        if not self.settings.alert_on_rollback:
            return []
        return await self._send(
            ["rollback"],
            version=version,
            outcome="RolledBack" if success else "RollbackFailed",
            reason=reason,
        )

    async def _send(self, kinds: list[str], **event: Any) -> list[str]:
        url = self.settings.webhook_url
        if not kinds or not self.settings.enabled or url is None:
            return []
        body = {"source": "dataflow", "alerts": kinds, **event}
        return kinds if await post_json(url, body, f"{'/'.join(kinds)} alert") else []
