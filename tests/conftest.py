"""Fixtures every suite shares: throwaway redis-server and PostgreSQL on free ports.

Tests never touch the machine's own 6379/5432: each session starts its own servers and stops them.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from receiptsync_sandbox import services

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def services_dir():
    path = Path(tempfile.mkdtemp(prefix="receiptsync-test-services-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(services_dir):
    server = services.start_redis(services_dir / "redis")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def postgres_server(services_dir):
    server = services.start_postgres(services_dir / "postgres")
    yield server
    server.stop()
    services.remove_postgres_data(services_dir / "postgres")


@pytest.fixture(scope="session")
def database_url(postgres_server) -> str:
    return postgres_server.url


@pytest.fixture
def fresh_database(postgres_server):
    """A new, empty database for one test; yields its URL."""
    import psycopg

    name = "t_" + os.urandom(6).hex()
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres_server.url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sandbox():
    """One sandbox for the session (`receiptsync-sandbox up --no-operator`): API server, node agent,
    controllers, Redis, PostgreSQL, Gmail emulator. Operator tests start their own operator."""
    from receiptsync_sandbox.testing import Sandbox

    with Sandbox(operator=False) as running:
        yield running
