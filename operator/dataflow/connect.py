"""The one way the engine opens a database session: a validated DSN and a pinned ``search_path``.

Every probe and statement is schema-qualified as well; pinning ``search_path`` to the target
schema is the second line of defence, so an unqualified name can never read ``public.<table>``
when the resource lives in another schema.

The DSN is checked here before the driver sees it: asyncpg echoes parts of a malformed URL (a
password holding an unencoded ``#`` or ``/`` ends up in "invalid literal for int()"), so every
problem is reported by :func:`parse_dsn` without quoting any of the DSN.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

import asyncpg

from dataflow.errors import DatabaseUnavailable, InvalidDatabaseURL
from dataflow.redact import Redactor
from dataflow.sqltext import quote_ident

CONNECT_TIMEOUT_S = 10.0
SCHEMES = ("postgresql", "postgres")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
ENCODE_HINT = "percent-encode '/', '?', '#' and '@' in the user name and password (%2F, %3F, %23, %40)"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class DatabaseURL:
    """The parts of a valid DSN the engine may show (no password)."""

    hosts: tuple[tuple[str, int | None], ...]
    database: str
    user: str
    params: tuple[str, ...]


def parse_dsn(dsn: object) -> DatabaseURL:
    """Parse a ``postgresql://`` / ``postgres://`` URL as asyncpg would; raise InvalidDatabaseURL if it cannot be."""
    if not isinstance(dsn, str) or not dsn.strip():
        raise InvalidDatabaseURL("is empty")
    if any(ch in dsn for ch in "\x00\r\n"):
        raise InvalidDatabaseURL("contains a NUL or line break")
    m = _SCHEME.match(dsn)
    if not m:
        raise InvalidDatabaseURL("must be a URL starting with postgresql:// or postgres://")
    if m.group(1).lower() not in SCHEMES:
        raise InvalidDatabaseURL("unknown scheme: use postgresql:// or postgres://")
    rest = dsn[m.end() :]
    if "#" in rest:
        raise InvalidDatabaseURL(f"contains '#': {ENCODE_HINT}")
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    path, _, query = tail.partition("?")
    if "@" in path:
        raise InvalidDatabaseURL(f"has '@' after the host: {ENCODE_HINT}")
    userinfo, _, hostspec = authority.rpartition("@")
    hosts = tuple(_host(part) for part in hostspec.split(",")) if hostspec else ()
    params = _params(query)
    return DatabaseURL(
        hosts, unquote(path.lstrip("/")), unquote(userinfo.partition(":")[0]), tuple(sorted(params))
    )


def validate_dsn(dsn: object) -> str:
    """``dsn`` itself when it is a valid DSN; InvalidDatabaseURL otherwise."""
    parse_dsn(dsn)
    return dsn  # type: ignore[return-value]


def _host(part: str) -> tuple[str, int | None]:
    """One ``host[:port]`` (or ``[v6]:port``) of the host list."""
    if part.startswith("["):
        host, bracket, port = part[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise InvalidDatabaseURL("malformed IPv6 host: use [address]:port")
        port = port[1:]
    else:
        host, _, port = part.partition(":")
    if any(ch.isspace() for ch in host):
        raise InvalidDatabaseURL("host contains white space")
    return unquote(host), _port(port, f" ({ENCODE_HINT})") if port else None


def _port(text: str, hint: str = "") -> int:
    if not text.isascii() or not text.isdigit():
        raise InvalidDatabaseURL(f"port is not a number{hint}")
    if not 1 <= int(text) <= 65535:
        raise InvalidDatabaseURL("port must be between 1 and 65535")
    return int(text)


def _params(query: str) -> dict[str, str]:
    """Query parameters; the ones asyncpg converts (port, sslmode) are checked here."""
    if "@" in query and not all("=" in chunk for chunk in query.split("&") if chunk):
        raise InvalidDatabaseURL(f"has '@' after the host: {ENCODE_HINT}")
    params = dict(parse_qsl(query, keep_blank_values=True))
    for port in filter(None, params.get("port", "").split(",")):
        _port(port)
    if "sslmode" in params and params["sslmode"] not in SSL_MODES:
        raise InvalidDatabaseURL(f"sslmode must be one of {', '.join(SSL_MODES)}")
    return params


def search_path(schema: str) -> str:
    """The ``search_path`` value that pins a session to ``schema`` alone."""
    return quote_ident(schema)


async def connect(
    dsn: str,
    schema: str | None = None,
    *,
    timeout: float = CONNECT_TIMEOUT_S,
    connection_class: type[asyncpg.Connection] = asyncpg.Connection,
) -> asyncpg.Connection:
    """Open a session on ``dsn``; with ``schema``, its ``search_path`` is that schema alone.

    Raises InvalidDatabaseURL before the driver sees a malformed DSN, and DatabaseUnavailable
    (with every credential redacted) when the session cannot be opened. ``connection_class`` is
    for the operator's pool (dataflow.pool), whose sessions remember the schema they are pinned to.
    """
    validate_dsn(dsn)
    settings = {"search_path": search_path(schema)} if schema else None
    try:
        return await asyncpg.connect(
            dsn, timeout=timeout, server_settings=settings, connection_class=connection_class
        )
    except Exception as exc:  # noqa: BLE001 - any driver error may echo the DSN; report it redacted
        message = " ".join(Redactor(dsn)(f"{type(exc).__name__}: {exc}").split())
        raise DatabaseUnavailable(f"cannot connect to the database: {message}") from None
