"""The SQL of row-level security policies, shared by the policy kinds."""

from __future__ import annotations

from dataflow.schema import POLICY_COMMANDS, PUBLIC_ROLE, Policy
from dataflow.sqlgen import keyword
from dataflow.sqltext import qualified
from dataflow.sqltext import quote_ident as q


def roles_sql(roles: tuple[str, ...]) -> str:
    """``TO`` role list: ``public`` is the keyword PUBLIC (a quoted "public" would name a role)."""
    return ", ".join("PUBLIC" if r == PUBLIC_ROLE else q(r) for r in roles)


def _clauses(p: Policy) -> str:
    parts = [f"TO {roles_sql(p.roles)}"]
    if p.using is not None:
        parts.append(f"USING ({p.using})")
    if p.with_check is not None:
        parts.append(f"WITH CHECK ({p.with_check})")
    return " ".join(parts)


def create_policy(p: Policy, table: str, schema: str) -> str:
    kind = "PERMISSIVE" if p.permissive else "RESTRICTIVE"
    command = keyword(p.command, POLICY_COMMANDS, f"{p.name}.command")
    return f"CREATE POLICY {q(p.name)} ON {qualified(schema, table)} AS {kind} FOR {command} {_clauses(p)};"


def drop_policy(name: str, table: str, schema: str) -> str:
    return f"DROP POLICY IF EXISTS {q(name)} ON {qualified(schema, table)};"


def alter_policy(p: Policy, table: str, schema: str) -> str:
    """ALTER POLICY rewrites roles and expressions (one left out stays as it was: the diff sends
    ALTER only when both sides have the same expressions present, see :func:`alterable`)."""
    return f"ALTER POLICY {q(p.name)} ON {qualified(schema, table)} {_clauses(p)};"


def policy_details(p: Policy) -> str:
    text = f"{p.name}: {'' if p.permissive else 'RESTRICTIVE '}FOR {p.command} TO {', '.join(p.roles)}"
    if p.using is not None:
        text += f" USING ({p.using})"
    if p.with_check is not None:
        text += f" WITH CHECK ({p.with_check})"
    return text


def alterable(old: Policy, new: Policy) -> bool:
    """Whether ALTER POLICY turns ``old`` into ``new`` and back (its undo): same command and kind, and
    the same expressions present on each side, since ALTER cannot remove one."""
    return (
        old.command == new.command
        and old.permissive == new.permissive
        and (old.using is None) == (new.using is None)
        and (old.with_check is None) == (new.with_check is None)
    )
