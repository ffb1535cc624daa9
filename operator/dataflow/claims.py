"""Ownership keys of objects that are not tables, in the ledger's ownership table (one namespace with
table names: a prefix no identifier can start with keeps them apart)."""

from __future__ import annotations

EXTENSION_CLAIM = "\x01extension:"


def extension_claim(name: str) -> str:
    """The ownership key of extension ``name``."""
    return EXTENSION_CLAIM + name


def claimed_extension(key: str) -> str | None:
    """The extension an ownership key claims, or None for a table's."""
    return key[len(EXTENSION_CLAIM) :] if key.startswith(EXTENSION_CLAIM) else None
