"""Versioned schema migrations: ``NNNN_name.sql`` files in this folder, applied in order, each once.

Pure data (SQL files) plus one function. The operator side applies them (at its start, with its
administrative database URL); workers never do - their database roles have no DDL (0004). An
advisory lock serializes concurrent callers (several operator replicas, test suites) and the
``schema_migrations`` table records what is applied, so the step is idempotent.
"""
from __future__ import annotations

import dataclasses
import re
from importlib import resources

import psycopg

# Arbitrary but fixed: every caller takes the same transaction-level advisory lock.
MIGRATION_LOCK_ID = 0x5EC1_0001
_FILE = re.compile(r"^(\d{4})_[\w-]+\.sql$")


@dataclasses.dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str


def available() -> list[Migration]:
    found = []
    for entry in resources.files(__package__).iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(match.group(1), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def apply_all(conn: psycopg.Connection) -> list[str]:
    """Apply every pending migration in one transaction; returns the versions applied now."""
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for migration in available():
            if migration.version in done:
                continue
            conn.execute(migration.sql)
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied_now.append(migration.version)
    return applied_now
