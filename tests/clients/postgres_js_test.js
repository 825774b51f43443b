#!/usr/bin/env node
// postgres.js (postgres) through pgswitch: named prepared statements across
// many transactions. postgres.js prepares every parameterized query as a named
// statement by default (prepare: true) and reuses it on later calls; it also
// pipelines queries issued concurrently on one connection. Each of the CONNS
// client connections is its own sql instance (max: 1), so all of a worker's
// statements are prepared on and reused from that one client connection.
//
// postgres.js silently re-prepares and retries a query when the server says
// its prepared statement does not exist; the debug hook counts such retries
// and each one is reported as an error.
//
// Env: PGSWITCH_CLIENT_DSN (required), PGSWITCH_CLIENT_CONNS (default 20),
//      PGSWITCH_CLIENT_ROUNDS (default 10), PGSWITCH_CLIENT_TIMEOUT (s, default 120).
// Exit 0 only if every result matched and no query failed.
'use strict';
const postgres = require('postgres');
const { isDeepStrictEqual, inspect } = require('util');

const LIB = 'postgres.js';
const DSN = process.env.PGSWITCH_CLIENT_DSN;
if (!DSN) { console.error('PGSWITCH_CLIENT_DSN is not set'); process.exit(2); }
const CONNS = Number(process.env.PGSWITCH_CLIENT_CONNS || 20);
const ROUNDS = Number(process.env.PGSWITCH_CLIENT_ROUNDS || 10);
const TIMEOUT = Number(process.env.PGSWITCH_CLIENT_TIMEOUT || 120);
const TABLE = `clients_postgres_js_${process.pid}`;
const BASE_MS = Date.UTC(2024, 0, 1);
const HOUR = 3600 * 1000;

const stats = { queries: 0, errors: 0, builds: 0 };
const summary = () => console.log(`${LIB}: ${CONNS} connections, ${stats.queries} queries, ${stats.errors} errors`);
function fail(c, what, got, want) {
  stats.errors++;
  console.error(`${LIB}: conn ${c}: ${what}: got ${inspect(got)}, want ${inspect(want)}`);
}
function check(c, what, got, want) { if (!isDeepStrictEqual(got, want)) fail(c, what, got, want); }
// Rejects after `s` seconds (the timer does not keep the process alive).
const deadline = (s, what) => new Promise((_, reject) => setTimeout(() => reject(new Error(`${what} not finished after ${s}s`)), s * 1000).unref());

// Every query this script writes starts with SELECT or INSERT; postgres.js's
// own (begin, commit, type lookup) are lower case. A retry builds a query again.
const debug = (_conn, text) => { if (/^(SELECT|INSERT) /.test(text)) stats.builds++; };
const connect = () => postgres(DSN, { max: 1, debug, onnotice: () => {} });

// Await a query; return the single value of a one-column row, the row, or the row count.
async function one(query) {
  stats.queries++;
  const rows = await query;
  if (rows.command === 'INSERT') return rows.count;
  const keys = Object.keys(rows[0]);
  return keys.length === 1 ? rows[0][keys[0]] : { ...rows[0] };
}

// cents -> exact numeric text with 2 decimals, e.g. 1205 -> '12.05'
const money = (cents) => `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}`;
const sum = (xs) => xs.reduce((a, b) => a + b, 0);
const insert = (sql, c, n, label) => sql`INSERT INTO ${sql(TABLE)} (conn, n, label) VALUES (${c}, ${n}, ${label})`;
const totals = (sql, c) => sql`SELECT coalesce(sum(n), 0)::int AS s, count(*)::int AS k FROM ${sql(TABLE)} WHERE conn = ${c}`;
const add = (sql, a, b) => sql`SELECT ${a}::int + ${b}::int AS s`;

function roundSteps(sql, c, r) { // [label, () => query, expected]; queries are built lazily
  const n = r % 4 + 1;
  return [
    ['add', () => add(sql, c * 1000 + r, 7 * r - 3), c * 1000 + r + 7 * r - 3],
    ['repeat', () => sql`SELECT repeat(${`ab${c}`}::text, ${r % 5 + 1}::int) AS s`, `ab${c}`.repeat(r % 5 + 1)],
    ['count', () => sql`SELECT count(*)::int AS n FROM generate_series(1, ${c + r + 1}::int)`, c + r + 1],
    ['numeric', () => sql`SELECT ${money(c * 100 + r)}::numeric * ${r + 2}::int AS v`, money((c * 100 + r) * (r + 2))],
    ['timestamp', () => sql`SELECT ${new Date(BASE_MS + c * 24 * HOUR)}::timestamptz + make_interval(hours => ${r}::int) AS t`,
      new Date(BASE_MS + (c * 24 + r) * HOUR)],
    ['array', () => sql`SELECT array_agg(g * ${c + 1}::int ORDER BY g) AS a FROM generate_series(1, ${n}::int) g`,
      Array.from({ length: n }, (_, i) => (i + 1) * (c + 1))],
    ['array-param', () => sql`SELECT ${[c, r]}::int[] || ${c + r}::int AS a`, [c, r, c + r]],
    ['mul', () => sql.unsafe(`SELECT $1::int * ${c + 2} AS v`, [r], { prepare: true }), r * (c + 2)], // per-connection text
    ['insert', () => insert(sql, c, c * 100 + r, `c${c}-r${r}`), 1],
  ];
}

class Rollback extends Error {}

async function worker(c) {
  const sql = connect();
  try {
    const inserted = []; // n values that must be in the table for conn c
    for (let r = 0; r < ROUNDS; r++) {
      const steps = roundSteps(sql, c, r);
      const k = c % steps.length; // rotate the order per connection
      for (const [label, query, want] of [...steps.slice(k), ...steps.slice(0, k)]) {
        let got;
        try { got = await one(query()); } catch (e) { fail(c, `${label} round ${r}`, `${e.code}: ${e.message}`, want); continue; }
        check(c, `${label} round ${r}`, got, want);
        if (label === 'insert' && got === want) inserted.push(c * 100 + r);
      }
    }

    // Pipelined: 10 executions of the prepared 'add' sent back to back on one connection.
    const piped = await Promise.all(Array.from({ length: 10 }, (_, i) => one(add(sql, i, c))));
    check(c, 'pipelined add', piped, Array.from({ length: 10 }, (_, i) => i + c));

    // Explicit transactions: 3 committed, each with prepared queries inside.
    for (let t = 0; t < 3; t++) {
      const n = 10000 + c * 10 + t;
      await sql.begin(async (tx) => {
        check(c, `in-tx insert ${t}`, await one(insert(tx, c, n, `c${c}-t${t}`)), 1);
        inserted.push(n);
        check(c, `in-tx totals ${t}`, await one(totals(tx, c)), { s: sum(inserted), k: inserted.length });
        check(c, `in-tx add ${t}`, await one(add(tx, n, t)), n + t);
      });
    }

    // One rolled-back transaction: its row is visible inside, gone after.
    await sql.begin(async (tx) => {
      await one(insert(tx, c, 999999, 'rolled-back'));
      check(c, 'in-rollback-tx totals', await one(totals(tx, c)), { s: sum(inserted) + 999999, k: inserted.length + 1 });
      throw new Rollback();
    }).catch((e) => { if (!(e instanceof Rollback)) throw e; });

    check(c, 'final totals', await one(totals(sql, c)), { s: sum(inserted), k: inserted.length });
    const labels = await one(sql`SELECT array_agg(label ORDER BY n) AS l FROM ${sql(TABLE)} WHERE conn = ${c}`);
    const want = [...Array.from({ length: ROUNDS }, (_, r) => `c${c}-r${r}`), `c${c}-t0`, `c${c}-t1`, `c${c}-t2`];
    check(c, 'final labels', labels, want);
  } catch (e) {
    fail(c, 'worker aborted', `${e.code}: ${e.message}`, 'no exception');
  } finally {
    await sql.end({ timeout: 5 }).catch(() => {});
  }
}

async function main() {
  const admin = connect();
  try {
    await admin.unsafe(`DROP TABLE IF EXISTS ${TABLE}`);
    await admin.unsafe(`CREATE TABLE ${TABLE} (conn int NOT NULL, n int NOT NULL, label text NOT NULL)`);
    const workers = Promise.all(Array.from({ length: CONNS }, (_, c) => worker(c)));
    try {
      await Promise.race([workers, deadline(TIMEOUT, 'workload')]);
      const [{ n }] = await admin.unsafe(`select count(*)::int AS n FROM ${TABLE}`);
      check('-', 'table row count', n, CONNS * (ROUNDS + 3));
    } catch (e) { fail('-', 'workload', e.message, 'finished'); }
    const retries = stats.builds - stats.queries;
    if (retries > 0) fail('-', 'queries silently re-prepared and retried by postgres.js', retries, 0);
  } finally {
    await Promise.race([admin.unsafe(`DROP TABLE IF EXISTS ${TABLE}`), deadline(10, 'DROP TABLE')])
      .catch((e) => fail('-', 'cleanup', e.message, `table ${TABLE} dropped`));
    await admin.end({ timeout: 5 }).catch(() => {});
  }
}

// Last resort if even the cleanup hangs.
const timer = setTimeout(() => {
  fail('-', 'cleanup', `not finished after ${TIMEOUT + 20}s`, 'finished');
  summary();
  process.exit(1);
}, (TIMEOUT + 20) * 1000);

main()
  .catch((e) => fail('-', 'setup', `${e.code}: ${e.message}`, 'no exception'))
  .finally(() => {
    clearTimeout(timer);
    summary();
    process.exit(stats.errors ? 1 : 0);
  });
