"""The seed's User evolution on the embedded PostgreSQL: create, then add three columns.

Run with `make demo`. The embedded server keeps its data in ./.dataflow; the demo starts from an
empty database each time so the whole flow shows.
"""

import asyncio
from datetime import datetime

import asyncpg

from dataflow import DataFlow

db = DataFlow()  # no URL: embedded PostgreSQL under ./.dataflow


@db.model
class User:
    name: str
    email: str
    created_at: datetime = None


async def fresh_database() -> None:
    conn = await asyncpg.connect(db.dsn)
    await conn.execute(
        'DROP TABLE IF EXISTS "user", dataflow_migrations, dataflow_owned_tables, dataflow_migration_lock'
    )
    await conn.close()


async def main() -> None:
    await fresh_database()
    print("== 1. initialize(): create the tables of the models")
    await db.initialize()
    async with db.connection() as conn:
        await conn.execute('INSERT INTO "user" (name, email) VALUES ($1, $2)', "Ada", "ada@example.com")

    print("\n== 2. the model gains phone, is_active and updated_at; auto_migrate() shows the preview")

    @db.model
    class User:  # noqa: F811 - redefining a model replaces it
        name: str
        email: str
        phone: str = None
        is_active: bool = True
        created_at: datetime = None
        updated_at: datetime = None

    success, migrations = await db.auto_migrate(auto_confirm=True, show_rollback_plan=True)
    print(f"\nsuccess={success}, migrations={[m.version for m in migrations]}")

    print("\n== 3. run again: nothing to do")
    print(await db.auto_migrate(auto_confirm=True))

    print("\n== 4. history")
    for record in await db.get_migration_history(limit=10):
        print(
            f"  {record.name}  {record.status}  {len(record.operations)} operation(s)  {record.applied_at:%H:%M:%S}"
        )
    async with db.connection() as conn:
        row = await conn.fetchrow('SELECT name, phone, is_active FROM "user"')
    print(f"\nexisting row kept: {dict(row)}")


if __name__ == "__main__":
    asyncio.run(main())
