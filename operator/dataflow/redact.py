"""Keep credentials out of messages: every status, event, log line and error goes through here."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

MASK = "***"


class Redactor:
    """Replaces a DSN, its password and its user:password part with ``***`` in any text."""

    def __init__(self, dsn: str) -> None:
        secrets = {dsn}
        try:
            parts = urlsplit(dsn)
            if parts.password:
                secrets |= {parts.password, unquote(parts.password)}
        except ValueError:
            pass
        _, sep, rest = dsn.partition("://")
        userinfo = rest.rpartition("@")[0] if sep else ""
        if ":" in userinfo:  # the raw user:password, even when a stray '#' or '/' fools urlsplit
            secrets |= {userinfo, userinfo.partition(":")[2]}
        for chunk in dsn.replace(";", " ").split():  # key=value DSNs: password=...
            if chunk.startswith("password="):
                secrets.add(chunk.split("=", 1)[1])
        self._secrets = sorted((s for s in secrets if s), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text
