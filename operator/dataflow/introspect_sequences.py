"""Sequences of their own (not identity columns'), read in one catalog query for the whole schema.

A serial column's sequence is one of these (owned by its column, ``deptype 'a'``); an identity
column's is not (``deptype 'i'``): its options belong to the column (:mod:`dataflow.introspect`),
which gets them from the same query (one join over the schema's sequences, not one over every column).
"""

from __future__ import annotations

import asyncpg

from dataflow.schema import Sequence

_SEQUENCES = """
SELECT c.relname AS name, s.seqstart AS start, s.seqincrement AS increment,
       ot.relname AS owner_table, oa.attname AS owner_column, d.deptype = 'i' AS identity
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_sequence s ON s.seqrelid = c.oid
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
     AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')
LEFT JOIN pg_class ot ON ot.oid = d.refobjid
LEFT JOIN pg_attribute oa ON oa.attrelid = d.refobjid AND oa.attnum = d.refobjsubid
WHERE n.nspname = $1 AND c.relkind = 'S'
ORDER BY c.relname
"""


# (table, column) of an identity column → its sequence's START and INCREMENT (1, PostgreSQL's own, is None)
IdentityOptions = dict[tuple[str, str], tuple[int | None, int | None]]


async def read_sequences(
    conn: asyncpg.Connection, schema: str
) -> tuple[tuple[Sequence, ...], IdentityOptions]:
    """Every sequence of ``schema`` but identity columns' (1, PostgreSQL's own START/INCREMENT, is None),
    and the options of the identity columns' sequences by column."""
    sequences, identity = [], {}
    for r in await conn.fetch(_SEQUENCES, schema):
        start = None if r["start"] == 1 else int(r["start"])
        increment = None if r["increment"] == 1 else int(r["increment"])
        if r["identity"]:
            identity[(r["owner_table"], r["owner_column"])] = (start, increment)
            continue
        owner = f"{r['owner_table']}.{r['owner_column']}" if r["owner_table"] else None
        sequences.append(Sequence(r["name"], start, increment, owner))
    return tuple(sequences), identity
