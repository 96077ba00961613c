"""The schema migrations now live in :mod:`receiptsync_common.migrations` and are applied by the
operator side (at its start), never by a worker: a worker's database role has no DDL. Kept as an
alias for tools and tests that prepare a database themselves."""
from receiptsync_common.migrations import MIGRATION_LOCK_ID, Migration, apply_all, available  # noqa: F401
