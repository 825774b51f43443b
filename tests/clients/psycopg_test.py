#!/usr/bin/env python3
"""psycopg 3 through pgswitch: named prepared statements across many transactions.

Every connection uses prepare_threshold=0, so each query is prepared as a
named statement (_pg3_N) on first use and reused after. Each connection
issues its statements in a different order, so the same name means
different SQL on different client connections.

Env: PGSWITCH_CLIENT_DSN (required), PGSWITCH_CLIENT_CONNS (default 20),
     PGSWITCH_CLIENT_ROUNDS (default 10), PGSWITCH_CLIENT_TIMEOUT (s, default 120).
Exit 0 only if every result matched and no query failed.
"""
import asyncio
import datetime as dt
import os
import sys
from decimal import Decimal

import psycopg

LIB = "psycopg"
DSN = os.environ.get("PGSWITCH_CLIENT_DSN") or sys.exit("PGSWITCH_CLIENT_DSN is not set")
CONNS = int(os.environ.get("PGSWITCH_CLIENT_CONNS", "20"))
ROUNDS = int(os.environ.get("PGSWITCH_CLIENT_ROUNDS", "10"))
TIMEOUT = float(os.environ.get("PGSWITCH_CLIENT_TIMEOUT", "120"))
TABLE = f"clients_{LIB}_{os.getpid()}"
BASE_TS = dt.datetime(2024, 1, 1)
INSERT = f"INSERT INTO {TABLE} (conn, n, label) VALUES (%s, %s, %s)"
TOTALS = f"SELECT coalesce(sum(n), 0)::int, count(*)::int FROM {TABLE} WHERE conn = %s"

stats = {"queries": 0, "errors": 0}


def fail(c, what, got, want):
    stats["errors"] += 1
    print(f"{LIB}: conn {c}: {what}: got {got!r}, want {want!r}", file=sys.stderr)


def check(c, what, got, want):
    if got != want:
        fail(c, what, got, want)


async def q(conn, sql, args):
    """Run one statement; return the first column of the first row, or the rowcount."""
    stats["queries"] += 1
    cur = await conn.execute(sql, args)
    if cur.description is None:
        return cur.rowcount
    row = await cur.fetchone()
    return row[0] if len(row) == 1 else tuple(row)


def round_steps(c, r):
    """(label, sql, args, expected) for connection c, round r."""
    return [
        ("add", "SELECT %s::int + %s::int", (c * 1000 + r, 7 * r - 3), c * 1000 + r + 7 * r - 3),
        ("repeat", "SELECT repeat(%s::text, %s::int)", (f"ab{c}", r % 5 + 1), f"ab{c}" * (r % 5 + 1)),
        ("count", "SELECT count(*) FROM generate_series(1, %s::int)", (c + r + 1,), c + r + 1),
        ("numeric", "SELECT %s::numeric * %s::int", (Decimal(f"{c}.{r:02d}"), r + 2), Decimal(f"{c}.{r:02d}") * (r + 2)),
        ("timestamp", "SELECT %s::timestamp + make_interval(hours => %s::int)",
         (BASE_TS + dt.timedelta(days=c), r), BASE_TS + dt.timedelta(days=c, hours=r)),
        ("array", "SELECT array_agg(g * %s::int ORDER BY g) FROM generate_series(1, %s::int) g",
         (c + 1, r % 4 + 1), [g * (c + 1) for g in range(1, r % 4 + 2)]),
        ("array-param", "SELECT %s::int[] || %s::int", ([c, r], c + r), [c, r, c + r]),
        ("text-param", "SELECT upper(%s) || length(%s)::text", (f"x{c}y{r}", f"x{c}y{r}"),
         f"X{c}Y{r}{len(f'x{c}y{r}')}"),
        ("insert", INSERT, (c, c * 100 + r, f"c{c}-r{r}"), 1),
    ]


async def worker(c):
    conn = await psycopg.AsyncConnection.connect(DSN, prepare_threshold=0, autocommit=True)
    try:
        inserted = []  # n values that must be in the table for conn c
        for r in range(ROUNDS):
            steps = round_steps(c, r)
            k = c % len(steps)  # rotate so statement names map to different SQL per connection
            for label, sql, args, want in steps[k:] + steps[:k]:
                try:
                    got = await q(conn, sql, args)
                except psycopg.Error as e:
                    fail(c, f"{label} round {r}", f"{type(e).__name__}: {e}", want)
                    continue
                check(c, f"{label} round {r}", got, want)
                if label == "insert" and got == want:
                    inserted.append(args[1])

        # Explicit transactions: 3 committed, each with prepared queries inside.
        for t in range(3):
            n = 10_000 + c * 10 + t
            async with conn.transaction():
                check(c, f"in-tx insert {t}", await q(conn, INSERT, (c, n, f"c{c}-t{t}")), 1)
                inserted.append(n)
                check(c, f"in-tx totals {t}", await q(conn, TOTALS, (c,)), (sum(inserted), len(inserted)))
                check(c, f"in-tx add {t}", await q(conn, "SELECT %s::int + %s::int", (n, t)), n + t)

        # One rolled-back transaction: its row is visible inside, gone after.
        async with conn.transaction() as tx:
            await q(conn, INSERT, (c, 999_999, "rolled-back"))
            check(c, "in-rollback-tx totals", await q(conn, TOTALS, (c,)), (sum(inserted) + 999_999, len(inserted) + 1))
            raise psycopg.Rollback(tx)

        check(c, "final totals", await q(conn, TOTALS, (c,)), (sum(inserted), len(inserted)))
        labels = await q(conn, f"SELECT array_agg(label ORDER BY n) FROM {TABLE} WHERE conn = %s", (c,))
        want = [f"c{c}-r{r}" for r in range(ROUNDS)] + [f"c{c}-t{t}" for t in range(3)]
        check(c, "final labels", labels, want)
    except Exception as e:  # noqa: BLE001 - any error is a failure
        fail(c, "worker aborted", f"{type(e).__name__}: {e}", "no exception")
    finally:
        await conn.close()


async def main():
    admin = await psycopg.AsyncConnection.connect(DSN, autocommit=True)
    try:
        await admin.execute(f"DROP TABLE IF EXISTS {TABLE}")
        await admin.execute(f"CREATE TABLE {TABLE} (conn int NOT NULL, n int NOT NULL, label text NOT NULL)")
        try:
            await asyncio.wait_for(asyncio.gather(*(worker(c) for c in range(CONNS))), TIMEOUT)
            cur = await admin.execute(f"SELECT count(*) FROM {TABLE}")
            check("-", "table row count", (await cur.fetchone())[0], CONNS * (ROUNDS + 3))
        except asyncio.TimeoutError:
            fail("-", "workload", f"not finished after {TIMEOUT}s", "finished")
    finally:
        try:
            await asyncio.wait_for(admin.execute(f"DROP TABLE IF EXISTS {TABLE}"), 10)
        except Exception as e:  # noqa: BLE001
            fail("-", "cleanup", f"{type(e).__name__}: {e}", f"table {TABLE} dropped")
        await admin.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # noqa: BLE001
        fail("-", "setup", f"{type(e).__name__}: {e}", "no exception")
    print(f"{LIB}: {CONNS} connections, {stats['queries']} queries, {stats['errors']} errors")
    sys.exit(1 if stats["errors"] else 0)
