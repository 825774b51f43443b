#!/usr/bin/env python3
"""asyncpg through pgswitch: named prepared statements across many transactions.

asyncpg's default statement cache (statement_cache_size=100) turns every
parameterized fetch/execute into a named statement (__asyncpg_stmt_N__).
Each connection issues its statements in a different order, so the same name
means different SQL on different client connections; one statement is also
prepared explicitly with conn.prepare() and its text differs per connection.

Env: PGSWITCH_CLIENT_DSN (required), PGSWITCH_CLIENT_CONNS (default 20),
     PGSWITCH_CLIENT_ROUNDS (default 10), PGSWITCH_CLIENT_TIMEOUT (s, default 120).
Exit 0 only if every result matched and no query failed.
"""
import asyncio
import datetime as dt
import os
import sys
from decimal import Decimal

import asyncpg

LIB = "asyncpg"
DSN = os.environ.get("PGSWITCH_CLIENT_DSN") or sys.exit("PGSWITCH_CLIENT_DSN is not set")
CONNS = int(os.environ.get("PGSWITCH_CLIENT_CONNS", "20"))
ROUNDS = int(os.environ.get("PGSWITCH_CLIENT_ROUNDS", "10"))
TIMEOUT = float(os.environ.get("PGSWITCH_CLIENT_TIMEOUT", "120"))
TABLE = f"clients_{LIB}_{os.getpid()}"
BASE_TS = dt.datetime(2024, 1, 1)

stats = {"queries": 0, "errors": 0}


def fail(c, what, got, want):
    stats["errors"] += 1
    print(f"{LIB}: conn {c}: {what}: got {got!r}, want {want!r}", file=sys.stderr)


def check(c, what, got, want):
    if got != want:
        fail(c, what, got, want)


async def q(conn, method, sql, *args):
    stats["queries"] += 1
    return await getattr(conn, method)(sql, *args)


def round_steps(c, r):
    """(label, method, sql, args, expected) for connection c, round r."""
    return [
        ("add", "fetchval", "SELECT $1::int + $2::int", (c * 1000 + r, 7 * r - 3), c * 1000 + r + 7 * r - 3),
        ("repeat", "fetchval", "SELECT repeat($1::text, $2::int)", (f"ab{c}", r % 5 + 1), f"ab{c}" * (r % 5 + 1)),
        ("count", "fetchval", "SELECT count(*) FROM generate_series(1, $1::int)", (c + r + 1,), c + r + 1),
        ("numeric", "fetchval", "SELECT $1::numeric * $2::int", (Decimal(f"{c}.{r:02d}"), r + 2),
         Decimal(f"{c}.{r:02d}") * (r + 2)),
        ("timestamp", "fetchval", "SELECT $1::timestamp + make_interval(hours => $2::int)",
         (BASE_TS + dt.timedelta(days=c), r), BASE_TS + dt.timedelta(days=c, hours=r)),
        ("array", "fetchval", "SELECT array_agg(g * $2::int ORDER BY g) FROM generate_series(1, $1::int) g",
         (r % 4 + 1, c + 1), [g * (c + 1) for g in range(1, r % 4 + 2)]),
        ("array-param", "fetchval", "SELECT $1::int[] || $2::int", ([c, r], c + r), [c, r, c + r]),
        ("insert", "execute", f"INSERT INTO {TABLE} (conn, n, label) VALUES ($1, $2, $3)",
         (c, c * 100 + r, f"c{c}-r{r}"), "INSERT 0 1"),
    ]


async def totals(conn, c):
    row = await q(conn, "fetchrow", f"SELECT coalesce(sum(n), 0)::int AS s, count(*)::int AS k FROM {TABLE} WHERE conn = $1", c)
    return row["s"], row["k"]


async def worker(c):
    conn = await asyncpg.connect(DSN)
    try:
        inserted = []  # n values that must be in the table for conn c
        # Explicitly prepared statement; its text differs per connection.
        mul = await conn.prepare(f"SELECT $1::int * {c + 2} AS v")
        for r in range(ROUNDS):
            steps = round_steps(c, r)
            k = c % len(steps)  # rotate so statement names map to different SQL per connection
            for label, method, sql, args, want in steps[k:] + steps[:k]:
                try:
                    got = await q(conn, method, sql, *args)
                except Exception as e:  # noqa: BLE001 - any error is a failure
                    fail(c, f"{label} round {r}", f"{type(e).__name__}: {e}", want)
                    continue
                check(c, f"{label} round {r}", got, want)
                if label == "insert" and got == want:
                    inserted.append(args[1])
            stats["queries"] += 1
            check(c, f"prepared mul round {r}", await mul.fetchval(r), r * (c + 2))

        # Explicit transactions: 3 committed, each with prepared queries inside.
        for t in range(3):
            n = 10_000 + c * 10 + t
            async with conn.transaction():
                await q(conn, "execute", f"INSERT INTO {TABLE} (conn, n, label) VALUES ($1, $2, $3)", c, n, f"c{c}-t{t}")
                inserted.append(n)
                check(c, f"in-tx totals {t}", await totals(conn, c), (sum(inserted), len(inserted)))
                check(c, f"in-tx add {t}", await q(conn, "fetchval", "SELECT $1::int + $2::int", n, t), n + t)

        # One rolled-back transaction: its row is visible inside, gone after.
        tx = conn.transaction()
        await tx.start()
        await q(conn, "execute", f"INSERT INTO {TABLE} (conn, n, label) VALUES ($1, $2, $3)", c, 999_999, "rolled-back")
        check(c, "in-rollback-tx totals", await totals(conn, c), (sum(inserted) + 999_999, len(inserted) + 1))
        await tx.rollback()

        check(c, "final totals", await totals(conn, c), (sum(inserted), len(inserted)))
        labels = await q(conn, "fetchval", f"SELECT array_agg(label ORDER BY n) FROM {TABLE} WHERE conn = $1", c)
        want = [f"c{c}-r{r}" for r in range(ROUNDS)] + [f"c{c}-t{t}" for t in range(3)]
        check(c, "final labels", labels, want)
    except Exception as e:  # noqa: BLE001
        fail(c, "worker aborted", f"{type(e).__name__}: {e}", "no exception")
    finally:
        try:
            await conn.close(timeout=5)
        except Exception as e:  # noqa: BLE001
            fail(c, "close", f"{type(e).__name__}: {e}", "closed")


async def main():
    admin = await asyncpg.connect(DSN)
    try:
        await admin.execute(f"DROP TABLE IF EXISTS {TABLE}")
        await admin.execute(f"CREATE TABLE {TABLE} (conn int NOT NULL, n int NOT NULL, label text NOT NULL)")
        try:
            await asyncio.wait_for(asyncio.gather(*(worker(c) for c in range(CONNS))), TIMEOUT)
            rows = await admin.fetchval(f"SELECT count(*) FROM {TABLE}")
            check("-", "table row count", rows, CONNS * (ROUNDS + 3))
        except asyncio.TimeoutError:
            fail("-", "workload", f"not finished after {TIMEOUT}s", "finished")
    finally:
        try:
            await asyncio.wait_for(admin.execute(f"DROP TABLE IF EXISTS {TABLE}"), 10)
        except Exception as e:  # noqa: BLE001
            fail("-", "cleanup", f"{type(e).__name__}: {e}", f"table {TABLE} dropped")
        await admin.close(timeout=5)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # noqa: BLE001
        fail("-", "setup", f"{type(e).__name__}: {e}", "no exception")
    print(f"{LIB}: {CONNS} connections, {stats['queries']} queries, {stats['errors']} errors")
    sys.exit(1 if stats["errors"] else 0)
