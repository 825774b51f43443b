#!/usr/bin/env node
// node-postgres (pg) through pgswitch: named prepared statements across many
// transactions. Every parameterized query is a named query
// ({ name, text, values }): pg parses it once per client connection and then
// only binds/executes it. The statement 'mul' has a different text on each
// connection, so the same name means different SQL on different clients.
//
// Env: PGSWITCH_CLIENT_DSN (required), PGSWITCH_CLIENT_CONNS (default 20),
//      PGSWITCH_CLIENT_ROUNDS (default 10), PGSWITCH_CLIENT_TIMEOUT (s, default 120).
// Exit 0 only if every result matched and no query failed.
'use strict';
const { Client } = require('pg');
const { isDeepStrictEqual, inspect } = require('util');

const LIB = 'node-pg';
const DSN = process.env.PGSWITCH_CLIENT_DSN;
if (!DSN) { console.error('PGSWITCH_CLIENT_DSN is not set'); process.exit(2); }
const CONNS = Number(process.env.PGSWITCH_CLIENT_CONNS || 20);
const ROUNDS = Number(process.env.PGSWITCH_CLIENT_ROUNDS || 10);
const TIMEOUT = Number(process.env.PGSWITCH_CLIENT_TIMEOUT || 120);
const TABLE = `clients_node_pg_${process.pid}`;
const BASE_MS = Date.UTC(2024, 0, 1);
const HOUR = 3600 * 1000;

const stats = { queries: 0, errors: 0 };
const summary = () => console.log(`${LIB}: ${CONNS} connections, ${stats.queries} queries, ${stats.errors} errors`);
function fail(c, what, got, want) {
  stats.errors++;
  console.error(`${LIB}: conn ${c}: ${what}: got ${inspect(got)}, want ${inspect(want)}`);
}
function check(c, what, got, want) { if (!isDeepStrictEqual(got, want)) fail(c, what, got, want); }
// Rejects after `s` seconds (the timer does not keep the process alive).
const deadline = (s, what) => new Promise((_, reject) => setTimeout(() => reject(new Error(`${what} not finished after ${s}s`)), s * 1000).unref());

// Run a named query; return the single value of a one-column row, the row, or the rowCount.
async function q(client, name, text, values) {
  stats.queries++;
  const res = await client.query({ name, text, values });
  if (res.command === 'INSERT') return res.rowCount;
  const row = res.rows[0];
  const keys = Object.keys(row);
  return keys.length === 1 ? row[keys[0]] : row;
}

// cents -> exact numeric text with 2 decimals, e.g. 1205 -> '12.05'
const money = (cents) => `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}`;
const INSERT = `INSERT INTO ${TABLE} (conn, n, label) VALUES ($1, $2, $3)`;
const TOTALS = `SELECT coalesce(sum(n), 0)::int AS s, count(*)::int AS k FROM ${TABLE} WHERE conn = $1`;
const sum = (xs) => xs.reduce((a, b) => a + b, 0);

function roundSteps(c, r) { // [name, text, values, expected]
  const n = r % 4 + 1;
  return [
    ['add', 'SELECT $1::int + $2::int AS s', [c * 1000 + r, 7 * r - 3], c * 1000 + r + 7 * r - 3],
    ['repeat', 'SELECT repeat($1::text, $2::int) AS s', [`ab${c}`, r % 5 + 1], `ab${c}`.repeat(r % 5 + 1)],
    ['count', 'SELECT count(*)::int AS n FROM generate_series(1, $1::int)', [c + r + 1], c + r + 1],
    ['numeric', 'SELECT $1::numeric * $2::int AS v', [money(c * 100 + r), r + 2], money((c * 100 + r) * (r + 2))],
    ['timestamp', 'SELECT $1::timestamptz + make_interval(hours => $2::int) AS t',
      [new Date(BASE_MS + c * 24 * HOUR), r], new Date(BASE_MS + (c * 24 + r) * HOUR)],
    ['array', 'SELECT array_agg(g * $2::int ORDER BY g) AS a FROM generate_series(1, $1::int) g',
      [n, c + 1], Array.from({ length: n }, (_, i) => (i + 1) * (c + 1))],
    ['array-param', 'SELECT $1::int[] || $2::int AS a', [[c, r], c + r], [c, r, c + r]],
    ['mul', `SELECT $1::int * ${c + 2} AS v`, [r], r * (c + 2)], // same name, per-connection text
    ['insert', INSERT, [c, c * 100 + r, `c${c}-r${r}`], 1],
  ];
}

async function worker(c) {
  const client = new Client({ connectionString: DSN });
  client.on('error', (e) => fail(c, 'client error event', e.message, 'none'));
  await client.connect();
  try {
    const inserted = []; // n values that must be in the table for conn c
    for (let r = 0; r < ROUNDS; r++) {
      const steps = roundSteps(c, r);
      const k = c % steps.length; // rotate the order per connection
      for (const [name, text, values, want] of [...steps.slice(k), ...steps.slice(0, k)]) {
        let got;
        try { got = await q(client, name, text, values); } catch (e) { fail(c, `${name} round ${r}`, `${e.code}: ${e.message}`, want); continue; }
        check(c, `${name} round ${r}`, got, want);
        if (name === 'insert' && got === want) inserted.push(values[1]);
      }
    }

    // Explicit transactions: 3 committed, each with named queries inside.
    for (let t = 0; t < 3; t++) {
      const n = 10000 + c * 10 + t;
      await client.query('BEGIN');
      check(c, `in-tx insert ${t}`, await q(client, 'insert', INSERT, [c, n, `c${c}-t${t}`]), 1);
      inserted.push(n);
      check(c, `in-tx totals ${t}`, await q(client, 'totals', TOTALS, [c]), { s: sum(inserted), k: inserted.length });
      check(c, `in-tx add ${t}`, await q(client, 'add', 'SELECT $1::int + $2::int AS s', [n, t]), n + t);
      await client.query('COMMIT');
    }

    // One rolled-back transaction: its row is visible inside, gone after.
    await client.query('BEGIN');
    await q(client, 'insert', INSERT, [c, 999999, 'rolled-back']);
    check(c, 'in-rollback-tx totals', await q(client, 'totals', TOTALS, [c]), { s: sum(inserted) + 999999, k: inserted.length + 1 });
    await client.query('ROLLBACK');

    check(c, 'final totals', await q(client, 'totals', TOTALS, [c]), { s: sum(inserted), k: inserted.length });
    const labels = await q(client, 'labels', `SELECT array_agg(label ORDER BY n) AS l FROM ${TABLE} WHERE conn = $1`, [c]);
    const want = [...Array.from({ length: ROUNDS }, (_, r) => `c${c}-r${r}`), 'c' + c + '-t0', 'c' + c + '-t1', 'c' + c + '-t2'];
    check(c, 'final labels', labels, want);
  } catch (e) {
    fail(c, 'worker aborted', `${e.code}: ${e.message}`, 'no exception');
  } finally {
    await client.end().catch(() => {});
  }
}

async function main() {
  const admin = new Client({ connectionString: DSN });
  admin.on('error', (e) => fail('-', 'admin error event', e.message, 'none'));
  await admin.connect();
  try {
    await admin.query(`DROP TABLE IF EXISTS ${TABLE}`);
    await admin.query(`CREATE TABLE ${TABLE} (conn int NOT NULL, n int NOT NULL, label text NOT NULL)`);
    const workers = Promise.all(Array.from({ length: CONNS }, (_, c) => worker(c)));
    try {
      await Promise.race([workers, deadline(TIMEOUT, 'workload')]);
      const { rows } = await admin.query(`SELECT count(*)::int AS n FROM ${TABLE}`);
      check('-', 'table row count', rows[0].n, CONNS * (ROUNDS + 3));
    } catch (e) { fail('-', 'workload', e.message, 'finished'); }
  } finally {
    await Promise.race([admin.query(`DROP TABLE IF EXISTS ${TABLE}`), deadline(10, 'DROP TABLE')])
      .catch((e) => fail('-', 'cleanup', e.message, `table ${TABLE} dropped`));
    await admin.end().catch(() => {});
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
