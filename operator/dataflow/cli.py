"""``dataflow`` command line: manifests, plan, apply, baseline, history, rollback, operator.

Exit codes: 0 applied or in sync, 1 refused (policy, conflict, or not confirmed), 2 error (bad input,
failed apply, unreachable database), 130 interrupted; ``plan --exit-code`` adds 3: changes pending.
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from dataflow import import_command, manifest_size
from dataflow.adoption import kept_line
from dataflow.baseline import baseline
from dataflow.connect import connect
from dataflow.dataflow import DataFlow
from dataflow.embedded import resolve_dsn
from dataflow.errors import DataFlowError, MigrationConflictError, SchemaError
from dataflow.manifest import (
    dump,
    from_resource,
    generate,
    load_dataflow,
    load_models,
    read_documents,
    validate,
)
from dataflow.preview import render_console, render_json, render_markdown, stdout_console
from dataflow.reconcile import Outcome, Result, plan, reconcile
from dataflow.redact import Redactor
from dataflow.sqltext import identifier_problem

EXIT_OK, EXIT_REFUSED, EXIT_ERROR, EXIT_CHANGES, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dataflow", description="Declarative PostgreSQL schemas from Python models."
    )
    sub = p.add_subparsers(dest="command", required=True)

    def target(sp: argparse.ArgumentParser, max_risk: bool = True) -> None:
        sp.add_argument(
            "models", nargs="?", help="a Python file defining `db = DataFlow()` and @db.model classes"
        )
        sp.add_argument("-f", "--file", help="a DataFlowSchema manifest instead of a models file")
        sp.add_argument(
            "--database-url", help="PostgreSQL URL (default: $DATABASE_URL, else the embedded server)"
        )
        if max_risk:
            sp.add_argument(
                "--max-risk", choices=["SAFE", "MEDIUM", "HIGH"], help="refuse operations above this level"
            )
        sp.add_argument(
            "--prune",
            action="store_true",
            help="on tables being adopted, drop the columns, indexes and constraints the models do not "
            "declare (default: keep and list them)",
        )

    sp = sub.add_parser("plan", help="show what apply would do")
    target(sp)
    sp.add_argument("--format", choices=["table", "markdown", "json"], default="table")
    sp.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 3 when changes are pending (0 in sync, 1 conflict, 2 error), like git diff --exit-code",
    )

    sp = sub.add_parser("apply", help="apply the schema (asks unless --auto-confirm)")
    target(sp)
    sp.add_argument("--auto-confirm", action="store_true", help="apply without asking (policy still applies)")
    sp.add_argument(
        "--approve", metavar="HASH", help="approve this exact plan (manifest mode), whatever its risk"
    )

    sp = sub.add_parser(
        "baseline",
        help="adopt existing tables as they are: record them in the ledger and claim them, no DDL",
        description="Record the existing tables the models (or manifest) name as this owner's, as they "
        "are: a ledger migration with no operations, the tables claimed, and what the models do not "
        "declare (columns, indexes, constraints) recorded as kept and left alone from then on. The "
        "database schema is not changed. Differences beyond the kept objects are listed and the next "
        "plan makes them (exit 0). Nothing to adopt (already held by this owner): nothing recorded, "
        "exit 0. A table held by another owner: nothing recorded, exit 1.",
    )
    target(sp, max_risk=False)

    sp = sub.add_parser("history", help="show the migration ledger")
    sp.add_argument("--database-url")
    sp.add_argument("--schema", default="public")
    sp.add_argument("--limit", type=_positive, default=10)

    sp = sub.add_parser("rollback", help="roll back an applied migration")
    sp.add_argument("version")
    sp.add_argument("--database-url")
    sp.add_argument("--schema", default="public")

    man = sub.add_parser("manifest", help="DataFlowSchema manifests").add_subparsers(
        dest="manifest_command", required=True
    )
    sp = man.add_parser("generate", help="write the DataFlowSchema for a models file")
    sp.add_argument("models")
    sp.add_argument("--name", required=True)
    sp.add_argument("--namespace", required=True)
    sp.add_argument("--secret", required=True, help="name of the Secret holding the DSN")
    sp.add_argument("--secret-key", default="dsn")
    sp.add_argument("--max-risk", default="MEDIUM", choices=["SAFE", "MEDIUM", "HIGH"])
    sp.add_argument(
        "--promotion-after",
        help="apply only after this DataFlowSchema (staging) has applied; with --split, part N waits for "
        "its part N (generate staging from the same models with the same options)",
    )
    sp.add_argument(
        "--max-bytes",
        type=_positive,
        default=manifest_size.DEFAULT_MAX_BYTES,
        help="the largest resource to write, as the API server stores it (default: %(default)s, "
        "its 1.5 MiB limit less room for status and metadata)",
    )
    sp.add_argument(
        "--split",
        action="store_true",
        help="spread the tables over resources NAME-1, NAME-2... when one would be over --max-bytes "
        "(tables linked by foreign keys stay together)",
    )
    sp.add_argument("-o", "--output", help="file to write (default: stdout)")
    sp = man.add_parser("validate", help="check manifests against the CRD and the engine's rules")
    sp.add_argument("files", nargs="+")
    import_command.add_arguments(
        man.add_parser("import", help="write the DataFlowSchema of a live schema"), True
    )
    import_command.add_arguments(sub.add_parser("import", help="write models for a live schema"), False)

    sub.add_parser("operator", help="run the Kubernetes operator (kopf run -m dataflow.k8s.operator)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = stdout_console(soft_wrap=True)
    try:
        if args.command == "operator":
            os.execvp("kopf", ["kopf", "run", "-m", "dataflow.k8s.operator", "--all-namespaces"])
        if args.command == "import" or getattr(args, "manifest_command", None) == "import":
            return asyncio.run(import_command.run(args, manifest=args.command == "manifest"))
        if args.command == "manifest":
            return _manifest(args, console)
        return asyncio.run(_database_command(args, console))
    except KeyboardInterrupt:
        _error("interrupted", args)
        return EXIT_INTERRUPTED
    except DataFlowError as exc:
        _error(str(exc), args)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - OSError, driver, YAML, decoding...: one line, never a traceback
        _error(f"{type(exc).__name__}: {exc}", args)
        return EXIT_ERROR


def _error(message: str, args: argparse.Namespace) -> None:
    """``error: <one line>`` on stderr, with any database URL in reach redacted."""
    for url in (getattr(args, "database_url", None), os.environ.get("DATABASE_URL")):
        if url:
            message = Redactor(url)(message)
    line = " ".join(message.split())
    Console(stderr=True, soft_wrap=True, highlight=False).print(Text.assemble(("error:", "red"), " ", line))


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return int(text)


def _manifest(args: argparse.Namespace, console: Console) -> int:
    if args.manifest_command == "generate":
        docs = _generate(args)
        text = "---\n".join(dump(doc) for doc in docs)
        if args.output:
            Path(args.output).write_text(text)
            console.print(f"wrote {args.output}")
        else:
            sys.stdout.write(text)
        return EXIT_OK
    failed = 0
    for source, doc in read_documents(args.files):
        problems = validate(doc)
        if problems:
            failed += 1
            for problem in problems:
                console.print(f"{source}: {problem}", markup=False, highlight=False)
        else:
            console.print(f"{source}: valid", markup=False, highlight=False)
    return EXIT_ERROR if failed else EXIT_OK


def _generate(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The DataFlowSchema(s) for a models file, each one sure to fit the API server (else exit 2)."""
    if args.max_bytes > manifest_size.MAX_OBJECT_BYTES:
        raise DataFlowError(
            f"--max-bytes: at most {manifest_size.MAX_OBJECT_BYTES:,} (the API server's object limit)"
        )
    schema = load_models(args.models)

    def build(part: int | None, tables: list[Any] | None = None) -> dict[str, Any]:
        suffix = "" if part is None else f"-{part}"
        after = args.promotion_after and args.promotion_after + suffix
        doc = generate(
            schema,
            name=args.name + suffix,
            namespace=args.namespace,
            secret=args.secret,
            secret_key=args.secret_key,
            max_risk=args.max_risk,
            promotion_after=after,
        )
        if tables is not None:
            doc["spec"]["tables"] = tables
        return doc

    docs = [build(None)]
    if args.split and manifest_size.stored_bytes(docs[0]) > args.max_bytes:
        widest = 10 ** len(str(len(docs[0]["spec"]["tables"])))  # the longest suffix a part can get
        parts = manifest_size.split_tables(
            docs[0]["spec"]["tables"],
            lambda tables: manifest_size.stored_bytes(build(widest, list(tables))),
            args.max_bytes,
        )
        docs = [build(number, list(part)) for number, part in enumerate(parts, 1)]
        for doc in docs[:-1]:  # views once, in the last part (each resource claims what it declares)
            doc["spec"].pop("views", None)
    for doc in docs:
        problems = validate(doc)
        if problems:
            raise DataFlowError("generated manifest is invalid: " + "; ".join(problems))
        manifest_size.check_fits(doc, args.max_bytes)
    warnings = [w for doc in docs if (w := manifest_size.client_side_apply_warning(doc))]
    if warnings:
        more = f" (and {len(warnings) - 1} more of the {len(docs)} resources)" if len(warnings) > 1 else ""
        Console(stderr=True, soft_wrap=True, highlight=False).print(
            Text.assemble(("warning:", "yellow"), " ", warnings[0] + more)
        )
    return docs


async def _database_command(args: argparse.Namespace, console: Console) -> int:
    if args.command in ("history", "rollback"):
        if problem := identifier_problem(args.schema):
            raise SchemaError("--schema", problem)
        db = DataFlow(args.database_url, migration_config={"schema": args.schema}, console=console)
        if args.command == "history":
            for r in await db.get_migration_history(limit=args.limit):
                console.print(
                    f"{r.version}  {r.status:<11} {r.safety_level:<6} {r.owner}  {r.description}"
                    + (f"  ({r.error})" if r.error else ""),
                    markup=False,
                    highlight=False,
                )
            return EXIT_OK
        return EXIT_OK if await db.rollback_migration(args.version) else EXIT_ERROR
    if bool(args.models) == bool(args.file):
        raise DataFlowError("give either a models file or -f MANIFEST")
    if args.command == "baseline":
        return await _baseline_command(args, console)
    if args.models:
        return await _models_command(args, console)
    return await _manifest_command(args, console)


async def _models_command(args: argparse.Namespace, console: Console) -> int:
    db = load_dataflow(args.models)
    if args.database_url:
        db.database_url = args.database_url
    db.console = console
    if args.prune:
        db.options = dataclasses.replace(db.options, prune=True)
    try:
        await db.auto_migrate(
            dry_run=args.command == "plan",
            auto_confirm=getattr(args, "auto_confirm", False),
            max_risk_level=args.max_risk,
        )
    except MigrationConflictError as exc:  # like a refusal: someone must decide, nothing failed
        console.print(f"[red]Conflict[/red]: {exc.message}", highlight=False)
        return EXIT_REFUSED
    code = _exit_code(db.last_result)
    if (
        code == EXIT_OK
        and _pending_exit(args)
        and db.last_result
        and db.last_result.outcome is Outcome.DRY_RUN
    ):
        return EXIT_CHANGES
    return code


async def _baseline_command(args: argparse.Namespace, console: Console) -> int:
    """``dataflow baseline``: the engine's :func:`dataflow.baseline.baseline`, its lines printed."""
    if args.models:
        db = load_dataflow(args.models)
        if args.database_url:
            db.database_url = args.database_url
        schema, owner, options, dsn = db.schema(), db.owner, db.options, db.dsn
    else:
        documents = read_documents([args.file])
        if len(documents) != 1:
            raise DataFlowError(f"{args.file}: expected one DataFlowSchema document, found {len(documents)}")
        manifest = from_resource(documents[0][1])
        schema, owner, options, dsn = (
            manifest.schema,
            manifest.owner,
            manifest.options,
            resolve_dsn(args.database_url),
        )
    if args.prune:
        options = dataclasses.replace(options, prune=True)
    conn = await connect(dsn, schema.name)
    try:
        result = await baseline(conn, dsn, schema, owner, options)
    except MigrationConflictError as exc:
        console.print(f"[red]Conflict[/red]: {exc.message}", highlight=False)
        return EXIT_REFUSED
    finally:
        await conn.close()
    for line in result.lines():
        console.print(line, markup=False, highlight=False)
    return EXIT_OK


def _pending_exit(args: argparse.Namespace) -> bool:
    """Whether ``plan --exit-code`` asked for exit 3 when changes are pending."""
    return args.command == "plan" and getattr(args, "exit_code", False)


def _exit_code(result: Result | None) -> int:
    """0 applied / in sync / planned; 1 refused, declined or in conflict; 2 failed."""
    if result is None or result.outcome is Outcome.FAILED:
        return EXIT_ERROR
    return EXIT_OK if result.success else EXIT_REFUSED


async def _manifest_command(args: argparse.Namespace, console: Console) -> int:
    documents = read_documents([args.file])
    if len(documents) != 1:
        raise DataFlowError(f"{args.file}: expected one DataFlowSchema document, found {len(documents)}")
    [(source, doc)] = documents
    manifest = from_resource(doc)
    options = manifest.options.with_cli_overrides(args.max_risk, getattr(args, "approve", None))
    if args.prune:
        options = dataclasses.replace(options, prune=True)
    dsn = resolve_dsn(args.database_url)
    conn = await connect(dsn, manifest.schema.name)
    try:
        if args.command == "plan":
            migration, conflicts = await plan(conn, manifest.schema, manifest.owner, options, dsn=dsn)
            fmt = args.format
            if fmt == "markdown":
                sys.stdout.write(
                    render_markdown(migration, f"DataFlow plan for {manifest.namespace}/{manifest.name}")
                    + "\n"
                )
            elif fmt == "json":
                sys.stdout.write(render_json(migration) + "\n")
            elif migration.operations:
                render_console(migration, console)
            else:
                console.print("No changes: the database matches the schema.")
                if migration.kept_objects:
                    console.print(kept_line(migration.kept_objects), markup=False, highlight=False)
            if conflicts:
                console.print(
                    f"Blocked: tables claimed by another owner: {conflicts}", markup=False, highlight=False
                )
            if conflicts:
                return EXIT_REFUSED
            return EXIT_CHANGES if migration.operations and _pending_exit(args) else EXIT_OK
        result = await reconcile(conn, dsn, manifest.schema, manifest.owner, options)
    finally:
        await conn.close()
    if result.migration is not None and result.migration.operations:
        render_console(result.migration, console)
    console.print(f"{result.outcome.value}: {result.reason}", markup=False, highlight=False)
    if result.needs_approval and result.plan_hash:
        console.print(
            f"approve this exact plan with: dataflow apply -f {source} --approve {result.plan_hash}",
            markup=False,
            highlight=False,
        )
    return _exit_code(result)


if __name__ == "__main__":
    sys.exit(main())
