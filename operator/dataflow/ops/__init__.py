"""Operation kinds, one module each; importing this package registers them all.

Adding a kind: write one module here (name, position, probe, grade, SQL, undo, flags) and import it below.
"""

from dataflow.ops import (  # noqa: F401
    add_column,
    add_constraint,
    add_exclusion,
    alter_column_collation,
    alter_column_type,
    alter_enum,
    alter_generated,
    alter_identity,
    alter_policy,
    alter_sequence,
    create_enum,
    create_extension,
    create_index,
    create_policy,
    create_sequence,
    create_table,
    drop_column,
    drop_constraint,
    drop_default,
    drop_enum,
    drop_extension,
    drop_index,
    drop_not_null,
    drop_policy,
    drop_table,
    rename_column,
    rename_table,
    set_comment,
    set_default,
    set_not_null,
    set_row_security,
)
from dataflow.ops.base import (
    Context,
    Kind,
    all_kinds,
    execution_order,
    kind_names,
    kind_of,
    register,
    sort_changes,
    unregister,
)

__all__ = [
    "Context",
    "Kind",
    "all_kinds",
    "execution_order",
    "kind_names",
    "kind_of",
    "register",
    "sort_changes",
    "unregister",
]
