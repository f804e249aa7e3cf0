"""The PostgreSQL server the [postgresql] tests run on, and fresh databases on it for each test.

A test's database is `CREATE DATABASE consultcam_t_<random> TEMPLATE consultcam_tpl_<random>`, the
template made from template0 and migrated once per run, and is dropped `WITH (FORCE)` after the test.
Creating and dropping cost 60-130 ms each (PostgreSQL copies the template through the WAL, and a drop
flushes), so one background thread makes the next databases while a test runs and drops the used ones
behind it: every test still gets a database no other test touched, and rarely waits (measured on
tests/sessions + tests/images: 29-31 s instead of 33-34 s with CREATE and DROP inside each test).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import os
import secrets
import threading
from collections.abc import Coroutine
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from consultcam.db import normalise_database_url

#: A database on the test server to connect to for CREATE/DROP DATABASE (the user needs CREATEDB);
#: postgresql://… and postgres://… spellings are accepted, as in CONSULTCAM_DATABASE_URL.
POSTGRES_URL = normalise_database_url(
    os.environ.get("CONSULTCAM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
)
#: Databases made ahead of the tests that will use them.
AHEAD = 2


def new_database_name(kind: str = "t") -> str:
    """consultcam_<kind>_<random>: unique whichever run (or engineer) shares the server."""
    return f"consultcam_{kind}_{secrets.token_hex(6)}"


def url_of(admin_url: str, database: str) -> str:
    """The consultcam (asyncpg) URL of `database` on the server of `admin_url`."""
    return make_url(admin_url).set(database=database).render_as_string(hide_password=False)


class PostgresServer:
    """Admin work on the test server (CREATE/DROP DATABASE) from one background thread, with its own event
    loop and one connection, so it runs alongside the tests whatever loop they run in.

    `execute` and `take` raise what asyncpg raises (OSError, TimeoutError, asyncpg.PostgresError) when
    the server does not answer or refuses.
    """

    def __init__(self, admin_url: str = POSTGRES_URL) -> None:
        self.admin_url = admin_url
        self.template = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="postgres-admin", daemon=True)
        self._thread.start()
        self._connection: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._ahead: collections.deque[concurrent.futures.Future[str]] = collections.deque()
        self._drops: list[concurrent.futures.Future[None]] = []

    def _submit(self, coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    async def _execute(self, *statements: str) -> None:
        async with self._lock:  # one connection: statements run one after the other, in submission order
            if self._connection is None:
                dsn = make_url(self.admin_url).set(drivername="postgresql")
                self._connection = await asyncpg.connect(dsn.render_as_string(hide_password=False), timeout=5)
            for statement in statements:
                await self._connection.execute(statement)

    def execute(self, *statements: str) -> None:
        """Run statements now, outside a transaction (CREATE/DROP DATABASE refuse to run in one)."""
        self._submit(self._execute(*statements)).result(timeout=120)

    def use_template(self, template: str) -> None:
        """Clone test databases from `template` (migrated) from now on, and start making them ahead."""
        self.template = template
        while len(self._ahead) < AHEAD:
            self._ahead.append(self._submit(self._create()))

    async def _create(self) -> str:
        name = new_database_name()
        await self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return name

    def take(self) -> str:
        """The URL of a fresh database cloned from the template, for one test; `give_back` it after."""
        assert self.template, "use_template first"
        if not self._ahead:
            self._ahead.append(self._submit(self._create()))
        made = self._ahead.popleft()
        self._ahead.append(self._submit(self._create()))
        return url_of(self.admin_url, made.result(timeout=120))

    def give_back(self, url: str) -> None:
        """Drop a test's database, in the background (its connections are closed by force)."""
        name = make_url(url).database
        self._drops.append(self._submit(self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))

    def close(self) -> None:
        """Drop what is left (databases made ahead, the template), then stop the thread. Raises the first
        error a background drop met."""
        try:
            for made in self._ahead:
                try:
                    self.give_back(url_of(self.admin_url, made.result(timeout=120)))
                except Exception:  # its creation failed: nothing to drop
                    continue
            self._ahead.clear()
            for drop in self._drops:
                drop.result(timeout=120)
            if self.template:
                self.execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
        finally:
            if self._connection is not None:
                self._submit(self._connection.close()).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()
