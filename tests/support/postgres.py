"""Databases of the tests' own on the development PostgreSQL: made fresh, dropped after."""

from __future__ import annotations

import os
import uuid

import psycopg

# The server's maintenance database, to create and drop the tests' own from.
ADMIN_URL = os.environ.get("SLUICE_TEST_POSTGRES_URL",
                           "postgresql://postgres@127.0.0.1:5432/postgres")


class TestDatabase:
    """A database named sluice_test_<random>, created by create(), dropped by drop()."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self) -> None:
        self.name = f"sluice_test_{uuid.uuid4().hex[:12]}"
        base, _, _ = ADMIN_URL.rpartition("/")
        self.url = f"{base}/{self.name}"

    def create(self) -> TestDatabase:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return self

    def drop(self) -> None:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def __enter__(self) -> TestDatabase:
        return self.create()

    def __exit__(self, *_: object) -> None:
        self.drop()
