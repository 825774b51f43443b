#!/usr/bin/env node
// @neondatabase/serverless (Neon's serverless driver) against pgswitch's
// serverless front: SQL over HTTP (`POST /sql`, the `neon()` function) and
// the wire protocol over WebSocket (`GET /v2`, the driver's Pool and Client).
// The driver runs unchanged; only its endpoints are pointed at pgswitch.
//
// Env: PGSWITCH_NEON_DSN (required), e.g. postgres://app:app-secret@127.0.0.1:PORT/app
//        where PORT is pgswitch's HTTP listener (it serves /sql and /v2);
//      PGSWITCH_NEON_SECURE: 1 = the listener speaks TLS (https/wss; the CA
//        comes through NODE_EXTRA_CA_CERTS), otherwise plain http/ws;
//      PGSWITCH_NEON_PART (required): http, ws or concurrent;
//      PGSWITCH_CLIENT_TIMEOUT (s, default 120).
// Exit 0 only if every result matched and no query failed unexpectedly.
'use strict';
const crypto = require('crypto');
const { isDeepStrictEqual, inspect } = require('util');
const { neon, neonConfig, Pool, Client } = require('@neondatabase/serverless');
const WebSocket = require('ws');

const LIB = 'neon';
const DSN = process.env.PGSWITCH_NEON_DSN;
const PART = process.env.PGSWITCH_NEON_PART;
const SECURE = process.env.PGSWITCH_NEON_SECURE === '1';
const TIMEOUT = Number(process.env.PGSWITCH_CLIENT_TIMEOUT || 120);
if (!DSN) { console.error('PGSWITCH_NEON_DSN is not set'); process.exit(2); }
if (!['http', 'ws', 'concurrent'].includes(PART)) {
  console.error(`PGSWITCH_NEON_PART must be http, ws or concurrent (got ${inspect(PART)})`);
  process.exit(2);
}
const URL_ = new URL(DSN);
if (!URL_.port) { console.error(`PGSWITCH_NEON_DSN has no port: ${DSN}`); process.exit(2); }
const USER = decodeURIComponent(URL_.username);
const DATABASE = decodeURIComponent(URL_.pathname.slice(1));
const TABLE = `neon_${PART}_${process.pid}`;

// The driver's defaults point at Neon: https://api.<host>/sql and
// wss://<host>/v2. Point both at the listener in the DSN. A string wsProxy
// gets `?address=<host>:<port>` appended by the driver.
neonConfig.fetchEndpoint = `${SECURE ? 'https' : 'http'}://${URL_.host}/sql`;
neonConfig.wsProxy = `${URL_.host}/v2`;
neonConfig.useSecureWebSocket = SECURE;
neonConfig.webSocketConstructor = WebSocket; // Node 20 has no global WebSocket
// pipelineConnect stays at its default ('password'): the driver sends the
// StartupMessage and a cleartext PasswordMessage without waiting.

const stats = { checks: 0, errors: 0 };
const summary = () => console.log(`${LIB}: ${stats.checks} checks, ${stats.errors} errors (part ${PART})`);
const MAX_PRINTED = 100;
function fail(what, got, want) {
  stats.errors++;
  if (stats.errors > MAX_PRINTED) {
    if (stats.errors === MAX_PRINTED + 1) console.error(`${LIB} ${PART}: more than ${MAX_PRINTED} errors; the rest are counted, not printed`);
    return;
  }
  console.error(`${LIB} ${PART}: ${what}: got ${inspect(got, { depth: 6 })}, want ${inspect(want, { depth: 6 })}`);
}
function check(what, got, want) {
  stats.checks++;
  if (!isDeepStrictEqual(got, want)) fail(what, got, want);
}
function errText(e) {
  if (!e || typeof e !== 'object') return String(e);
  let text = e.code ? `${e.code}: ${e.message}` : String(e.message !== undefined ? e.message : e);
  // neon() wraps fetch failures; fetch hides the reason in `cause`.
  const cause = e.sourceError && e.sourceError.cause;
  if (cause) text += ` (${cause.code ? `${cause.code}: ` : ''}${cause.message})`;
  return text;
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// Rejects after `s` seconds (the timer does not keep the process alive).
const deadline = (s, what) => new Promise((_, reject) => setTimeout(() => reject(new Error(`${what} not finished after ${s}s`)), s * 1000).unref());

// Await `promise` and compare its value with `want`.
async function same(what, promise, want) {
  let got;
  try { got = await promise; } catch (e) { fail(what, errText(e), want); return undefined; }
  check(what, got, want);
  return got;
}
// `promise` must reject; the listed properties of its error must equal `want`'s.
async function rejects(what, promise, want) {
  stats.checks++;
  let value;
  try { value = await promise; } catch (e) {
    const got = {};
    for (const k of Object.keys(want)) got[k] = e[k];
    if (!isDeepStrictEqual(got, want)) fail(what, got, want);
    return e;
  }
  fail(what, { resolved: value }, { rejected: want });
  return undefined;
}
// A group of checks; an unexpected exception counts as one error and the
// next group still runs.
async function step(name, fn) {
  try { await fn(); } catch (e) { fail(name, errText(e), 'no exception'); }
}

// Values used by both parts.
const TEXT = 'it\'s "quoted" \\ back\\slash, ünïcødé ✓ 🐘 日本語\nnew line\ttab';
const BYTES = Buffer.from([0, 1, 2, 0x27, 0x5c, 0x7f, 0x80, 0xff]);
const TS = new Date(Date.UTC(2024, 1, 29, 23, 59, 58, 789));
const OBJ = { a: 1, b: [true, false, null], c: { d: 'ü"\\' }, e: 1.5, f: 'x' };
const BIG_TEXT = 'abcdefghij'.repeat(100 * 1024); // 1 MiB parameter
const md5 = (s) => crypto.createHash('md5').update(s).digest('hex');

// ------------------------------------------------------------ part http ----

async function httpTypes(sql) {
  await same('bool', sql`SELECT ${true}::bool AS t, ${false}::bool AS f, ${null}::bool AS n`,
    [{ t: true, f: false, n: null }]);
  await same('int2', sql`SELECT ${-32768}::int2 AS lo, ${32767}::int2 AS hi`, [{ lo: -32768, hi: 32767 }]);
  await same('int4', sql`SELECT ${-2147483648}::int4 AS lo, ${2147483647}::int4 AS hi, ${7}::int4 * 6 AS m`,
    [{ lo: -2147483648, hi: 2147483647, m: 42 }]);
  await same('int8 (as string)',
    sql`SELECT ${'-9223372036854775808'}::int8 AS lo, ${9223372036854775807n}::int8 AS hi, ${42}::int8 AS small`,
    [{ lo: '-9223372036854775808', hi: '9223372036854775807', small: '42' }]);
  await same('float8',
    sql`SELECT ${0.1}::float8 AS a, ${-1.5e300}::float8 AS b, ${5e-324}::float8 AS tiny, ${NaN}::float8 AS nan, ${Infinity}::float8 AS inf, ${-Infinity}::float8 AS ninf`,
    [{ a: 0.1, b: -1.5e300, tiny: 5e-324, nan: NaN, inf: Infinity, ninf: -Infinity }]);
  await same('float4',
    sql`SELECT ${1.5}::float4 AS a, ${0.1}::float4 AS b, ${NaN}::float4 AS nan, ${Infinity}::float4 AS inf, ${-Infinity}::float4 AS ninf`,
    [{ a: 1.5, b: 0.1, nan: NaN, inf: Infinity, ninf: -Infinity }]);
  await same('numeric (as string)',
    sql`SELECT ${'12345678901234567890.123456789'}::numeric AS n, ${'-0.000001'}::numeric AS s, ${1.25}::numeric * 2 AS f, ${'NaN'}::numeric AS nan`,
    [{ n: '12345678901234567890.123456789', s: '-0.000001', f: '2.50', nan: 'NaN' }]);
  await same('text', sql`SELECT ${TEXT}::text AS t, char_length(${TEXT}::text) AS n, ${''}::text AS empty, ${'abc'}::varchar(5) AS v`,
    [{ t: TEXT, n: [...TEXT].length, empty: '', v: 'abc' }]);
  await same('untyped parameters', sql`SELECT ${'plain'} AS s, ${7} AS n`, [{ s: 'plain', n: '7' }]);
  await same('NULL', sql`SELECT ${null}::int AS i, ${null}::text AS t, ${null}::jsonb AS j, ${undefined}::text AS u, ${null}::text IS NULL AS isnull`,
    [{ i: null, t: null, j: null, u: null, isnull: true }]);
  await same('json and jsonb',
    sql`SELECT ${OBJ}::json AS j, ${OBJ}::jsonb AS jb, ${JSON.stringify([1, 'two', null])}::jsonb AS arr, ${'"str"'}::jsonb AS s, ${OBJ}::jsonb -> 'c' ->> 'd' AS inner`,
    [{ j: OBJ, jb: OBJ, arr: [1, 'two', null], s: 'str', inner: 'ü"\\' }]);
  await same('arrays',
    sql`SELECT ${[1, 2, 3]}::int[] AS a, ${[1, null, -3]}::int[] AS b, ${[]}::int[] AS e,
               ${[[1, 2], [3, 4]]}::int[] AS m, array_dims(${[[1, 2], [3, 4]]}::int[]) AS dims,
               ${['a', 'b,c', 'd"e', 'NULL', null, '', 'ü {x}']}::text[] AS t,
               ${['1', '9223372036854775807']}::int8[] AS big, ${[true, false]}::bool[] AS bools`,
    [{
      a: [1, 2, 3], b: [1, null, -3], e: [], m: [[1, 2], [3, 4]], dims: '[1:2][1:2]',
      t: ['a', 'b,c', 'd"e', 'NULL', null, '', 'ü {x}'], big: ['1', '9223372036854775807'], bools: [true, false],
    }]);
  await same('array built by the server', sql`SELECT array_agg(g * 2 ORDER BY g) AS a FROM generate_series(1, ${4}::int) g`,
    [{ a: [2, 4, 6, 8] }]);
  await same('timestamptz',
    sql`SELECT ${TS}::timestamptz AS t, ${TS}::timestamptz + interval '1 hour' AS later, ${'2000-01-01T00:00:00Z'}::timestamptz AS y2k, ${null}::timestamptz AS n`,
    [{ t: TS, later: new Date(TS.getTime() + 3600 * 1000), y2k: new Date(Date.UTC(2000, 0, 1)), n: null }]);
  // date and timestamp (no zone) parse to local-time Dates.
  await same('date', sql`SELECT ${'2024-02-29'}::date AS d, ${'1999-12-31'}::date + 1 AS next, ${new Date(2024, 1, 29, 12)}::date AS from_js`,
    [{ d: new Date(2024, 1, 29), next: new Date(2000, 0, 1), from_js: new Date(2024, 1, 29) }]);
  await same('timestamp', sql`SELECT ${'2024-01-02 03:04:05.5'}::timestamp AS ts`, [{ ts: new Date(2024, 0, 2, 3, 4, 5, 500) }]);
  // The driver appends ::bytea to Buffer parameters itself.
  await same('bytea', sql`SELECT ${BYTES} AS b, octet_length(${BYTES}) AS n, ${Buffer.alloc(0)} AS e, decode('deadbeef', 'hex') AS d`,
    [{ b: BYTES, n: BYTES.length, e: Buffer.alloc(0), d: Buffer.from('deadbeef', 'hex') }]);
  await same('uuid', sql`SELECT ${'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'}::uuid AS u`, [{ u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11' }]);
  await same('several rows', sql`SELECT g AS n, g * g AS sq FROM generate_series(1, ${5}::int) g ORDER BY g`,
    [1, 2, 3, 4, 5].map((n) => ({ n, sq: n * n })));
  await same('no rows', sql`SELECT 1 AS x WHERE ${false}::bool`, []);
  const where = sql`WHERE g > ${3}::int`;
  await same('composed query', sql`SELECT g FROM generate_series(1, ${5}::int) g ${where} ORDER BY g`, [{ g: 4 }, { g: 5 }]);
  const many = await sql`SELECT g AS n FROM generate_series(1, 20000) g ORDER BY g`;
  check('20000 rows', many.length === 20000 && many.every((r, i) => r.n === i + 1), true);
  await same('1 MiB parameter', sql`SELECT length(${BIG_TEXT}::text) AS n, md5(${BIG_TEXT}::text) AS h`,
    [{ n: BIG_TEXT.length, h: md5(BIG_TEXT) }]);
}

async function httpModes(sql) {
  const sqlArray = neon(DSN, { arrayMode: true });
  await same('arrayMode (neon option), duplicate names', sqlArray`SELECT ${1}::int AS a, ${'x'}::text AS a`, [[1, 'x']]);
  await same('arrayMode (query option)', sql.query('SELECT $1::int AS a, $2::text AS b', [2, 'y'], { arrayMode: true }), [[2, 'y']]);

  const full = await sql.query('SELECT $1::int AS a, $2::text AS b, $3::jsonb AS c', [7, 'z', { k: 1 }], { fullResults: true });
  check('fullResults rows', full.rows, [{ a: 7, b: 'z', c: { k: 1 } }]);
  check('fullResults fields', full.fields.map((f) => [f.name, f.dataTypeID]), [['a', 23], ['b', 25], ['c', 3802]]);
  check('fullResults command, rowCount, rowAsArray', [full.command, full.rowCount, full.rowAsArray], ['SELECT', 1, false]);

  const sqlFull = neon(DSN, { fullResults: true, arrayMode: true });
  const fa = await sqlFull`SELECT g AS n, ${'v'}::text AS v FROM generate_series(1, 3) g ORDER BY g`;
  check('fullResults+arrayMode rows', fa.rows, [[1, 'v'], [2, 'v'], [3, 'v']]);
  check('fullResults+arrayMode fields', fa.fields.map((f) => [f.name, f.dataTypeID]), [['n', 23], ['v', 25]]);
  check('fullResults+arrayMode command, rowCount, rowAsArray', [fa.command, fa.rowCount, fa.rowAsArray], ['SELECT', 3, true]);

  const none = await sqlFull`SELECT 1::int AS x WHERE false`;
  check('fullResults, no rows', [none.rows, none.fields.map((f) => [f.name, f.dataTypeID]), none.command, none.rowCount],
    [[], [['x', 23]], 'SELECT', 0]);

  const t = sql.unsafe(TABLE);
  const ins = await sqlFull`INSERT INTO ${t} (id, label) VALUES (${1}, 'one'), (${2}, 'two'), (${3}, 'three')`;
  check('INSERT: command, rowCount, rows, fields', [ins.command, ins.rowCount, ins.rows, ins.fields], ['INSERT', 3, [], []]);
  const upd = await sqlFull`UPDATE ${t} SET label = label || '!' WHERE id IN (${1}, ${2})`;
  check('UPDATE: command, rowCount', [upd.command, upd.rowCount], ['UPDATE', 2]);
  const del = await sqlFull`DELETE FROM ${t} WHERE id = ${3}`;
  check('DELETE: command, rowCount', [del.command, del.rowCount], ['DELETE', 1]);
  const ret = await sql.query(`INSERT INTO ${TABLE} (id, label) VALUES ($1, $2) RETURNING id, label`, [4, 'four'], { fullResults: true });
  check('INSERT RETURNING: rows, command, rowCount', [ret.rows, ret.command, ret.rowCount], [[{ id: 4, label: 'four' }], 'INSERT', 1]);
  // As Neon's proxy: the tag's first word, and null when the tag has no count.
  const ddl = await sql.query(`CREATE INDEX ${TABLE}_label ON ${TABLE} (label)`, [], { fullResults: true });
  check('CREATE INDEX: command, rowCount', [ddl.command, ddl.rowCount], ['CREATE', null]);
  await same('table contents', sql`SELECT id, label FROM ${t} ORDER BY id`,
    [{ id: 1, label: 'one!' }, { id: 2, label: 'two!' }, { id: 4, label: 'four' }]);
}

async function httpErrors(sql) {
  const t = sql.unsafe(TABLE);
  await rejects('division by zero', sql`SELECT 1/0 AS x`,
    { name: 'NeonDbError', code: '22012', message: 'division by zero', severity: 'ERROR' });
  await sql`INSERT INTO ${t} (id, label) VALUES (${1000}, 'first')`;
  await rejects('unique violation', sql`INSERT INTO ${t} (id, label) VALUES (${1000}, 'again')`, {
    name: 'NeonDbError', code: '23505', detail: 'Key (id)=(1000) already exists.',
    schema: 'public', table: TABLE, constraint: `${TABLE}_pkey`,
  });
  await rejects('syntax error', sql.query('SELECT 1 WHERE WHERE'),
    { name: 'NeonDbError', code: '42601', message: 'syntax error at or near "WHERE"', position: '16' });
  await rejects('undefined table', sql.query('SELECT * FROM neon_no_such_table'),
    { code: '42P01', message: 'relation "neon_no_such_table" does not exist', position: '15' });
  await rejects('undefined function (hint)', sql.query('SELECT neon_no_such_fn(1)'), {
    code: '42883', position: '8',
    hint: 'No function matches the given name and argument types. You might need to add explicit type casts.',
  });
  await rejects('RAISE with detail, hint, where',
    sql.query("DO $$ BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = 'P0001', DETAIL = 'the detail', HINT = 'the hint'; END $$"),
    { code: 'P0001', message: 'boom', detail: 'the detail', hint: 'the hint', where: 'PL/pgSQL function inline_code_block line 1 at RAISE' });
  // Neon runs each query as one extended-protocol statement.
  await rejects('two statements in one query', sql.query('SELECT 1; SELECT 2'), { code: '42601' });
  await same('a query after the errors', sql`SELECT ${1}::int AS ok`, [{ ok: 1 }]);

  const bad = new URL(DSN);
  bad.password = 'wrong-password';
  const e = await rejects('wrong password', neon(bad.href)`SELECT 1 AS x`, { name: 'NeonDbError' });
  if (e) check('wrong password: message', /password authentication failed/.test(e.message), true);
}

async function httpTransactions(sql) {
  const t = sql.unsafe(TABLE);
  await same('transaction: Serializable, readOnly',
    sql.transaction([sql`SHOW transaction_isolation`, sql`SHOW transaction_read_only`, sql`SHOW transaction_deferrable`,
      sql`SELECT ${5}::int AS v`], { isolationLevel: 'Serializable', readOnly: true }),
    [[{ transaction_isolation: 'serializable' }], [{ transaction_read_only: 'on' }], [{ transaction_deferrable: 'off' }], [{ v: 5 }]]);
  await same('transaction: Serializable, readOnly, deferrable',
    sql.transaction([sql`SHOW transaction_isolation`, sql`SHOW transaction_read_only`, sql`SHOW transaction_deferrable`],
      { isolationLevel: 'Serializable', readOnly: true, deferrable: true }),
    [[{ transaction_isolation: 'serializable' }], [{ transaction_read_only: 'on' }], [{ transaction_deferrable: 'on' }]]);
  for (const [level, shown] of [['ReadUncommitted', 'read uncommitted'], ['ReadCommitted', 'read committed'],
    ['RepeatableRead', 'repeatable read'], ['Serializable', 'serializable']]) {
    await same(`transaction: isolationLevel ${level}, readOnly false, deferrable false`,
      sql.transaction([sql`SHOW transaction_isolation`, sql`SHOW transaction_read_only`],
        { isolationLevel: level, readOnly: false, deferrable: false }),
      [[{ transaction_isolation: shown }], [{ transaction_read_only: 'off' }]]);
  }
  await same('transaction: no options (defaults)',
    sql.transaction([sql`SHOW transaction_isolation`, sql`SHOW transaction_read_only`]),
    [[{ transaction_isolation: 'read committed' }], [{ transaction_read_only: 'off' }]]);

  // All queries of a batch run in one transaction on one server connection.
  const ids = await sql.transaction([sql`SELECT txid_current()::text AS x, pg_backend_pid() AS pid`,
    sql`SELECT ${1}::int AS filler`, sql`SELECT txid_current()::text AS x, pg_backend_pid() AS pid`]);
  check('transaction: one transaction id and backend for the batch', ids[0], ids[2]);
  const times = await sql.transaction([sql`SELECT now()::text AS t`, sql`SELECT pg_sleep(0.01)::text AS s`, sql`SELECT now()::text AS t`],
    { isolationLevel: 'RepeatableRead', readOnly: true });
  check('transaction: one now() for the batch', times[0], times[2]);

  await rejects('transaction: readOnly refuses an INSERT',
    sql.transaction([sql`INSERT INTO ${t} (id, label) VALUES (${2001}, 'read-only')`], { readOnly: true }), { code: '25006' });
  await rejects('transaction: failing statement fails the batch',
    sql.transaction([sql`INSERT INTO ${t} (id, label) VALUES (${2000}, 'rolled back')`, sql`SELECT 1/0 AS x`]),
    { name: 'NeonDbError', code: '22012' });
  await same('transaction: the failed batch left nothing', sql`SELECT count(*)::int AS n FROM ${t} WHERE id IN (${2000}, ${2001})`, [{ n: 0 }]);
  await same('transaction: successful batch',
    sql.transaction([sql`INSERT INTO ${t} (id, label) VALUES (${2002}, 'committed') RETURNING id`,
      sql`SELECT count(*)::int AS n FROM ${t} WHERE id = ${2002}`]),
    [[{ id: 2002 }], [{ n: 1 }]]);
  await same('transaction: the committed row is there', sql`SELECT label FROM ${t} WHERE id = ${2002}`, [{ label: 'committed' }]);

  // The function form, with per-query and per-transaction result options.
  const mixed = await sql.transaction((txn) => [
    txn`SELECT ${1}::int AS a`,
    txn.query('SELECT $1::text AS b', ['x'], { arrayMode: true, fullResults: true }),
  ]);
  check('transaction (function form): first result', mixed[0], [{ a: 1 }]);
  check('transaction (function form): second result, fullResults+arrayMode',
    [mixed[1] && mixed[1].rows, mixed[1] && mixed[1].command, mixed[1] && mixed[1].rowCount], [[['x']], 'SELECT', 1]);
  await same('transaction: arrayMode for the batch',
    sql.transaction([sql`SELECT ${1}::int AS a, ${'y'}::text AS b`, sql`SELECT 2 AS c`], { arrayMode: true }), [[[1, 'y']], [[2]]]);
}

async function httpPart() {
  const sql = neon(DSN);
  let reached = false; // the server answered: the table may exist
  const work = (async () => {
    try {
      await sql.query(`DROP TABLE IF EXISTS ${TABLE}`);
      reached = true;
      await sql.query(`CREATE TABLE ${TABLE} (id int PRIMARY KEY, label text NOT NULL)`);
    } catch (e) { fail('setup (create table over HTTP)', errText(e), 'no exception'); return; }
    await step('types', () => httpTypes(sql));
    await step('arrayMode and fullResults', () => httpModes(sql));
    await step('errors', () => httpErrors(sql));
    await step('transactions', () => httpTransactions(sql));
  })();
  try { await Promise.race([work, deadline(TIMEOUT, 'http checks')]); } catch (e) { fail('http checks', errText(e), 'finished'); } finally {
    if (reached) {
      await Promise.race([sql.query(`DROP TABLE IF EXISTS ${TABLE}`), deadline(10, 'DROP TABLE')])
        .catch((e) => fail('cleanup', errText(e), `table ${TABLE} dropped`));
    }
  }
}

// ------------------------------------------------------ part concurrent ----

async function concurrentPart() {
  const sql = neon(DSN);
  const N = 200;
  const work = (async () => {
    try { await sql`SELECT 1 AS ok`; } catch (e) { fail('first query', errText(e), 'no exception'); return; }
    // Each query sleeps 50 ms so that they overlap.
    await Promise.all(Array.from({ length: N }, (_, i) =>
      same(`query ${i}`, sql.query('SELECT $1::int * 2 AS v FROM pg_sleep(0.05)', [i]), [{ v: 2 * i }])));
    // And 20 batches at once: each runs in a single transaction.
    await Promise.all(Array.from({ length: 20 }, async (_, i) => {
      let r;
      try {
        r = await sql.transaction([sql`SELECT txid_current()::text AS x`, sql`SELECT ${i}::int AS i FROM pg_sleep(0.02)`,
          sql`SELECT txid_current()::text AS x`]);
      } catch (e) { fail(`batch ${i}`, errText(e), 'no exception'); return; }
      check(`batch ${i}: its value`, r[1], [{ i }]);
      check(`batch ${i}: one transaction`, r[0], r[2]);
    }));
  })();
  try { await Promise.race([work, deadline(TIMEOUT, 'concurrent queries')]); } catch (e) { fail('concurrent', errText(e), 'finished'); }
}

// -------------------------------------------------------------- part ws ----

async function wsBasics(pool) {
  const simple = await pool.query("SELECT 1 AS one, 'x'::text AS t");
  check('simple query', [simple.rows, simple.command, simple.rowCount], [[{ one: 1, t: 'x' }], 'SELECT', 1]);
  const p = await pool.query(
    'SELECT $1::int + $2::int AS s, $3::text AS t, $4::int8 AS big, $5::jsonb AS j, $6::bytea AS b, $7::timestamptz AS ts, $8::int[] AS arr, $9::text AS n',
    [2, 3, TEXT, '9223372036854775807', OBJ, BYTES, TS, [[1, 2], [3, 4]], null]);
  check('parameterized query', p.rows,
    [{ s: 5, t: TEXT, big: '9223372036854775807', j: OBJ, b: BYTES, ts: TS, arr: [[1, 2], [3, 4]], n: null }]);
  await same('user and database', pool.query('SELECT current_user::text AS u, current_database()::text AS d').then((r) => r.rows),
    [{ u: USER, d: DATABASE }]);
  await same('20000 rows', pool.query('SELECT count(*)::int AS n, sum(g)::int8 AS s FROM (SELECT g FROM generate_series(1, 20000) g) x')
    .then((r) => r.rows), [{ n: 20000, s: String(20000 * 20001 / 2) }]);
  await same('20000 rows (transferred)', pool.query('SELECT g FROM generate_series(1, 20000) g ORDER BY g')
    .then((r) => r.rows.length === 20000 && r.rows.every((row, i) => row.g === i + 1)), true);
  await same('1 MiB parameter', pool.query('SELECT length($1::text) AS n, md5($1::text) AS h', [BIG_TEXT]).then((r) => r.rows),
    [{ n: BIG_TEXT.length, h: md5(BIG_TEXT) }]);

  const c = await pool.connect();
  try {
    const multi = await c.query('SELECT 1 AS a; SELECT 2 AS b');
    check('two statements in one simple query', Array.isArray(multi) && multi.map((r) => r.rows), [[{ a: 1 }], [{ b: 2 }]]);
    await rejects('error', c.query('SELECT 1/0 AS x'), { code: '22012', message: 'division by zero' });
    await same('query after an error', c.query('SELECT 2 AS x').then((r) => r.rows), [{ x: 2 }]);
  } finally { c.release(); }
}

async function wsTransactions(pool) {
  const c = await pool.connect();
  try {
    const count = async (id) => (await c.query(`SELECT count(*)::int AS n FROM ${TABLE} WHERE id = $1`, [id])).rows[0].n;
    await c.query('BEGIN');
    await c.query(`INSERT INTO ${TABLE} (id, label) VALUES ($1, $2)`, [1, 'rolled back']);
    check('in transaction: own insert visible', await count(1), 1);
    await c.query('ROLLBACK');
    check('after ROLLBACK: insert gone', await count(1), 0);

    await c.query('BEGIN');
    await c.query(`INSERT INTO ${TABLE} (id, label) VALUES ($1, $2)`, [2, 'committed']);
    check('in transaction: second insert visible', await count(2), 1);
    await c.query('COMMIT');
    check('after COMMIT: insert there', await count(2), 1);
    await same('committed row seen from another connection',
      pool.query(`SELECT label FROM ${TABLE} WHERE id = $1`, [2]).then((r) => r.rows), [{ label: 'committed' }]);

    await c.query('BEGIN');
    await rejects('error in transaction', c.query('SELECT 1/0 AS x'), { code: '22012' });
    await rejects('statement in failed transaction', c.query('SELECT 1 AS x'), { code: '25P02' });
    await c.query('ROLLBACK');
    await same('query after the failed transaction', c.query('SELECT 3 AS x').then((r) => r.rows), [{ x: 3 }]);
  } finally { c.release(); }
}

async function wsPrepared(pool) {
  // The same name with different SQL on two connections, each run several times.
  const [a, b] = [await pool.connect(), await pool.connect()];
  try {
    for (let i = 0; i < 5; i++) {
      await same(`named query on client A, run ${i}`,
        a.query({ name: 'neon_mul', text: 'SELECT $1::int * 3 AS v', values: [i] }).then((r) => r.rows), [{ v: 3 * i }]);
      await same(`named query on client B, run ${i}`,
        b.query({ name: 'neon_mul', text: 'SELECT $1::int * 5 AS v', values: [i] }).then((r) => r.rows), [{ v: 5 * i }]);
    }
    await a.query('BEGIN');
    await same('named query inside a transaction',
      a.query({ name: 'neon_mul', text: 'SELECT $1::int * 3 AS v', values: [10] }).then((r) => r.rows), [{ v: 30 }]);
    await a.query('COMMIT');
  } finally { a.release(); b.release(); }
}

// pg's Client.cancel(client, query) opens a new connection (here: a new
// WebSocket to /v2) and sends a CancelRequest with the victim's
// BackendKeyData.
async function wsCancel(pool) {
  const victim = await pool.connect();
  let broken = false;
  try {
    await victim.query('SELECT 1'); // the session is up and has its key
    check('BackendKeyData received', typeof victim.processID === 'number' && typeof victim.secretKey === 'number', true);
    const running = victim.query('SELECT pg_sleep(30) AS slept');
    running.catch(() => {}); // awaited below
    // A cancel that arrives before the query runs is lost: wait until the
    // server shows it running (asked on another connection).
    let seen = false;
    for (let i = 0; i < 100 && !seen; i++) {
      await sleep(100);
      const r = await pool.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query = 'SELECT pg_sleep(30) AS slept'");
      seen = r.rows[0].n > 0;
    }
    check('cancel: pg_sleep(30) seen running', seen, true);
    const active = victim.activeQuery;
    if (!active) { fail('cancel', 'no active query', 'pg_sleep(30) running'); broken = true; return; }
    const canceller = new Client({ connectionString: DSN });
    canceller.on('error', () => {}); // the server closes the cancel connection
    canceller.cancel(victim, active);
    let got;
    try {
      await Promise.race([running, deadline(10, 'pg_sleep(30) after cancel')]);
      got = 'finished normally';
    } catch (e) { got = e.code || e.message; }
    try { canceller.connection.stream.destroy(); } catch (_) { /* already closed */ }
    check('cancel: pg_sleep(30) fails with', got, '57014');
    if (got !== '57014') { broken = true; return; }
    await same('query after cancel', victim.query('SELECT 4 AS x').then((r) => r.rows), [{ x: 4 }]);
  } finally { victim.release(broken ? true : undefined); }
}

async function wsConcurrent(pool) {
  const clients = await Promise.all(Array.from({ length: 10 }, () => pool.connect()));
  try {
    check('10 pool clients open at once', pool.totalCount, 10);
    await Promise.all(clients.map(async (c, k) => {
      for (let r = 0; r < 5; r++) {
        const v = k * 100 + r;
        await same(`client ${k} round ${r}`, c.query('SELECT $1::int * 2 AS v FROM pg_sleep(0.02)', [v]).then((x) => x.rows), [{ v: 2 * v }]);
      }
    }));
  } finally { for (const c of clients) c.release(); }
  // More queries than clients: they queue in the pool.
  await Promise.all(Array.from({ length: 30 }, (_, i) =>
    same(`pool.query ${i}`, pool.query('SELECT $1::int + 1 AS v', [i]).then((x) => x.rows), [{ v: i + 1 }])));
}

async function wsClient() {
  const c = new Client({ connectionString: DSN });
  c.on('error', (e) => fail('Client error event', errText(e), 'none'));
  await c.connect();
  try {
    await same('Client: query', c.query('SELECT $1::text || $2::text AS s', ['ab', 'cd']).then((r) => r.rows), [{ s: 'abcd' }]);
    await same('Client: named query', c.query({ name: 'neon_add', text: 'SELECT $1::int + $2::int AS s', values: [40, 2] })
      .then((r) => r.rows), [{ s: 42 }]);
  } finally { await c.end(); }

  // With pipelineConnect the password goes out before the server asks for
  // it, and connect() resolves at once: the failure shows on the first query.
  const bad = new URL(DSN);
  bad.password = 'wrong-password';
  const w = new Client({ connectionString: bad.href });
  w.on('error', () => {});
  try {
    await w.connect();
    await rejects('Client: wrong password', w.query('SELECT 1 AS x'), { code: '28P01' });
  } catch (e) {
    check('Client: wrong password (on connect)', e.code, '28P01');
  } finally { await Promise.race([w.end(), sleep(2000)]).catch(() => {}); }
}

async function wsPart() {
  const pool = new Pool({ connectionString: DSN, max: 10 });
  pool.on('error', (e) => fail('pool error event (idle client)', errText(e), 'none'));
  let reached = false; // the server answered: the table may exist
  const work = (async () => {
    try {
      await pool.query(`DROP TABLE IF EXISTS ${TABLE}`);
      reached = true;
      await pool.query(`CREATE TABLE ${TABLE} (id int PRIMARY KEY, label text NOT NULL)`);
    } catch (e) { fail('setup (create table over WebSocket)', errText(e), 'no exception'); return; }
    await step('simple and parameterized queries', () => wsBasics(pool));
    await step('transactions', () => wsTransactions(pool));
    await step('named prepared queries', () => wsPrepared(pool));
    await step('cancel', () => wsCancel(pool));
    await step('concurrent clients', () => wsConcurrent(pool));
    await step('Client', () => wsClient());
  })();
  try { await Promise.race([work, deadline(TIMEOUT, 'ws checks')]); } catch (e) { fail('ws checks', errText(e), 'finished'); } finally {
    if (reached) {
      await Promise.race([pool.query(`DROP TABLE IF EXISTS ${TABLE}`), deadline(10, 'DROP TABLE')])
        .catch((e) => fail('cleanup', errText(e), `table ${TABLE} dropped`));
    }
    await Promise.race([pool.end(), sleep(5000)]).catch(() => {});
  }
}

// ---------------------------------------------------------------- main ----

process.on('unhandledRejection', (e) => fail('unhandled rejection', errText(e), 'none'));

// Last resort if even the cleanup hangs.
const timer = setTimeout(() => {
  fail('-', `not finished after ${TIMEOUT + 20}s`, 'finished');
  summary();
  process.exit(1);
}, (TIMEOUT + 20) * 1000);

({ http: httpPart, ws: wsPart, concurrent: concurrentPart })[PART]()
  .catch((e) => fail('setup', errText(e), 'no exception'))
  .finally(() => {
    clearTimeout(timer);
    if (stats.checks === 0 && stats.errors === 0) fail('-', 'no checks ran', 'checks');
    summary();
    process.exit(stats.errors ? 1 : 0);
  });
