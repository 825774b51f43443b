//! `POST /sql`: SQL over HTTP as Neon's proxy serves it. One statement
//! (`{"query", "params"}`), or a batch (`{"queries": [...]}`) run as one
//! transaction, per request. The credentials and database come from the
//! `Neon-Connection-String` header; the statement runs through a session
//! of its own (see `wire`), with parameters sent as text through the
//! extended protocol, never into the SQL.
//!
//! Causal reads: with replicas, an answer that may follow a write carries
//! the primary's WAL position after it (`Pgswitch-Lsn`); a request that
//! sends one back is read from a replica only once that replica has
//! replayed it (`SET pgswitch.min_lsn`), else from the primary.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{HeaderMap, StatusCode};
use postgres_protocol::message::frontend;
use postgres_protocol::IsNull;
use serde_json::{json, Value};

use super::result::{error_json, tag_text, Table};
use super::values;
use super::wire::{PgError, Wire, WireError};
use super::Answer;
use crate::config::HttpFront;
use crate::router::Route;
use crate::shared::Shared;

/// The header that carries a WAL position both ways.
pub const LSN_HEADER: &str = "pgswitch-lsn";

/// Statements longer than this are not routed (as in the session).
const MAX_ROUTED_SQL: usize = 64 * 1024;

/// The primary's position after a request's statements, asked on the
/// server that ran them, after their commit (NULL on a replica).
const CURRENT_LSN: &str = "SELECT CASE WHEN pg_is_in_recovery() THEN NULL \
                           ELSE pg_current_wal_insert_lsn()::text END";

/// One statement of a request.
#[derive(Debug)]
struct Statement {
    sql: String,
    params: Vec<Option<String>>,
}

/// The request headers that shape the answer and the batch.
struct Options {
    raw_text: bool,
    array_mode: bool,
    isolation: Option<&'static str>,
    read_only: bool,
    deferrable: bool,
    min_lsn: Option<String>,
}

/// A request refused before it reached a server, or answered with an error.
fn refuse(status: StatusCode, message: impl Into<String>) -> Answer {
    Answer::new(status, json!({ "message": message.into() }))
}

pub async fn handle(
    shared: &Arc<Shared>,
    tasks: &tokio_util::task::TaskTracker,
    front: &HttpFront,
    req: hyper::Request<Incoming>,
    peer: SocketAddr,
) -> Answer {
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    let Some(conn) = header(h, "neon-connection-string") else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "missing Neon-Connection-String header: send postgres://user:password@host/database",
        );
    };
    let Some((user, password, database)) = credentials(conn) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Neon-Connection-String is not a postgres://user:password@host/database URL",
        );
    };
    let options = match options(h) {
        Ok(o) => o,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, message),
    };
    let declared = header(h, "content-length").and_then(|l| l.parse::<u64>().ok());
    if declared.is_some_and(|l| l > front.max_request_bytes as u64) {
        return too_large(front);
    }
    let limited = http_body_util::Limited::new(body, front.max_request_bytes);
    let bytes = match tokio::time::timeout(front.read_timeout, limited.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_large(front),
        Ok(Err(e)) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("could not read the body: {e}"),
            )
        }
        Err(_) => {
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {:?}", front.read_timeout),
            )
        }
    };
    let (statements, batch) = match parse_body(&bytes) {
        Ok(r) => r,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, message),
    };
    let run = match Run::plan(shared, &user, &database, &statements, batch, &options) {
        Ok(run) => run,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, message),
    };
    // Past the deadline the request is answered 57014 and its wire
    // dropped, which cancels the query (see `wire`).
    let ran = tokio::time::timeout(
        front.query_timeout,
        run.run(
            shared,
            tasks,
            peer,
            (&user, &password, &database),
            &statements,
            front,
        ),
    )
    .await;
    ran.unwrap_or_else(|_| {
        let message = format!(
            "canceling statement due to http_query_timeout ({:?})",
            front.query_timeout
        );
        Answer::new(
            StatusCode::BAD_REQUEST,
            json!({ "message": message, "code": "57014", "severity": "ERROR" }),
        )
    })
}

fn too_large(front: &HttpFront) -> Answer {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body is over http_max_request_bytes ({} bytes)",
            front.max_request_bytes
        ),
    )
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn flag(h: &HeaderMap, name: &str) -> bool {
    header(h, name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// User, password and database of a `postgres://` URL (the host is not
/// used: the request already reached pgswitch).
fn credentials(url: &str) -> Option<(String, String, String)> {
    // Options in the query string (sslmode, application_name, ...) are
    // the client's business: the request already reached pgswitch.
    let base = url.split('?').next().unwrap_or(url);
    let config: tokio_postgres::Config = base.parse().ok()?;
    let user = config.get_user()?.to_owned();
    let password = String::from_utf8(config.get_password().unwrap_or_default().to_vec()).ok()?;
    let database = config.get_dbname().unwrap_or(&user).to_owned();
    Some((user, password, database))
}

fn options(h: &HeaderMap) -> Result<Options, String> {
    let isolation = match header(h, "neon-batch-isolation-level") {
        None => None,
        Some(level) => Some(match level.to_ascii_lowercase().replace([' ', '_'], "").as_str() {
            "serializable" => "SERIALIZABLE",
            "repeatableread" => "REPEATABLE READ",
            "readcommitted" => "READ COMMITTED",
            "readuncommitted" => "READ UNCOMMITTED",
            _ => {
                return Err(format!(
                    "Neon-Batch-Isolation-Level '{level}' is not one of Serializable, RepeatableRead, ReadCommitted, ReadUncommitted"
                ))
            }
        }),
    };
    let min_lsn = header(h, LSN_HEADER)
        .map(str::trim)
        .filter(|v| !v.is_empty());
    if let Some(lsn) = min_lsn {
        if crate::pool::health::parse_lsn(lsn).is_none() {
            return Err(format!(
                "Pgswitch-Lsn '{lsn}' is not a WAL position: send back the value of an earlier answer's Pgswitch-Lsn header"
            ));
        }
    }
    Ok(Options {
        raw_text: flag(h, "neon-raw-text-output"),
        array_mode: flag(h, "neon-array-mode"),
        isolation,
        read_only: flag(h, "neon-batch-read-only"),
        deferrable: flag(h, "neon-batch-deferrable"),
        min_lsn: min_lsn.map(str::to_owned),
    })
}

/// `{"query", "params"}` or `{"queries": [...]}`; `true` for a batch.
fn parse_body(bytes: &[u8]) -> Result<(Vec<Statement>, bool), String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        format!("the body is not JSON ({e}): send {{\"query\": \"...\", \"params\": [...]}}")
    })?;
    let one = |q: &Value| -> Result<Statement, String> {
        let sql = q
            .get("query")
            .and_then(Value::as_str)
            .ok_or("each query needs a \"query\" string")?;
        if sql.contains('\0') {
            return Err("a query may not contain a NUL character".into());
        }
        let params = match q.get("params") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(p)) => p.iter().map(values::param_text).collect(),
            Some(_) => return Err("\"params\" must be an array".into()),
        };
        Ok(Statement {
            sql: sql.to_owned(),
            params,
        })
    };
    match v.get("queries") {
        Some(Value::Array(qs)) => Ok((qs.iter().map(one).collect::<Result<_, _>>()?, true)),
        Some(_) => Err("\"queries\" must be an array".into()),
        None if v.is_object() => Ok((vec![one(&v)?], false)),
        None => Err("send a JSON object: {\"query\": \"...\", \"params\": [...]}".into()),
    }
}

/// What a request sends to its session, in one write.
struct Run {
    out: BytesMut,
    /// Whether a `SET pgswitch.min_lsn` Query goes first (its own Sync
    /// segment), and whether the WAL position is asked after the
    /// statements' segment.
    set_lsn: bool,
    ask_lsn: bool,
    batch: bool,
    raw_text: bool,
    array_mode: bool,
    min_lsn: Option<String>,
}

impl Run {
    fn plan(
        shared: &Shared,
        user: &str,
        database: &str,
        statements: &[Statement],
        batch: bool,
        o: &Options,
    ) -> Result<Run, String> {
        // Whether reads may go to replicas at all.
        let routed = {
            let config = shared.config.load();
            let r = &config.general.routing;
            r.enabled
                && r.consistency != crate::config::Consistency::PrimaryOnly
                && config.database(database).is_some_and(|d| {
                    !d.replicas.is_empty()
                        && config.pool_mode(d) != crate::config::PoolMode::Session
                })
        };
        let mut out = BytesMut::new();
        // Without replicas every read is on the primary: nothing to wait
        // for. (The session answers this SET itself.)
        let set_lsn = routed && o.min_lsn.is_some();
        if let (Some(lsn), true) = (&o.min_lsn, set_lsn) {
            crate::protocol::messages::query(&mut out, &format!("SET pgswitch.min_lsn = '{lsn}'"));
        }
        // The batch's BEGIN opens the same Sync segment as its statements:
        // if anything refuses it, the statements are skipped with it.
        if batch {
            let mut begin = String::from("BEGIN");
            if let Some(level) = o.isolation {
                begin.push_str(" ISOLATION LEVEL ");
                begin.push_str(level);
            }
            if o.read_only {
                begin.push_str(" READ ONLY");
            }
            if o.deferrable {
                begin.push_str(" DEFERRABLE");
            }
            extended(&mut out, &begin, &[], false).map_err(|e| e.to_string())?;
        }
        for s in statements {
            extended(&mut out, &s.sql, &s.params, true)
                .map_err(|_| "a statement has more than 65535 parameters".to_owned())?;
        }
        if batch {
            extended(&mut out, "COMMIT", &[], false).map_err(|e| e.to_string())?;
        }
        frontend::sync(&mut out);
        // A request the router sends to the primary asks for the
        // primary's position after its commit, in the same write (no round
        // trip of its own; it runs on the request's own server, which the
        // session holds until every Sync is answered). A read for a replica
        // does not: a second Sync would switch off the session's safety net
        // for it (a replica that refuses it or goes away, see
        // `session::replay`). Should one land on a replica anyway, the
        // query answers NULL there. Texts too long for the session to route
        // are taken as writes, as the session takes them.
        let pool = shared.pools.current(database, user);
        let router = pool.as_ref().and_then(|p| p.router.as_ref());
        let read = |r: &crate::router::Router, sql: &str| {
            sql.len() <= MAX_ROUTED_SQL && r.route(sql).is_ok_and(|d| d.route == Route::Replica)
        };
        let reads_only = (batch && o.read_only)
            || router.is_some_and(|r| statements.iter().all(|s| read(r, &s.sql)));
        let ask_lsn = routed && !reads_only;
        if ask_lsn {
            extended(&mut out, CURRENT_LSN, &[], false).map_err(|e| e.to_string())?;
            frontend::sync(&mut out);
        }
        Ok(Run {
            out,
            set_lsn,
            ask_lsn,
            batch,
            raw_text: o.raw_text,
            array_mode: o.array_mode,
            min_lsn: o.min_lsn.clone(),
        })
    }

    /// Logs in with the requests right behind, reads the answer, says
    /// goodbye.
    async fn run(
        self,
        shared: &Arc<Shared>,
        tasks: &tokio_util::task::TaskTracker,
        peer: SocketAddr,
        who: (&str, &str, &str),
        statements: &[Statement],
        front: &HttpFront,
    ) -> Answer {
        let login = Wire::login(
            shared,
            tasks,
            peer,
            who,
            &self.out,
            front.max_response_bytes,
        );
        let mut wire = match login.await {
            Ok(w) => w,
            Err(WireError::Fatal(e)) => {
                let status = match e.code() {
                    "28P01" | "28000" => StatusCode::UNAUTHORIZED,
                    "53300" | "57P01" | "57P03" => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::BAD_REQUEST,
                };
                return Answer::new(status, error_json(&e));
            }
            Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        };
        let answer = self.exchange(&mut wire, statements, front).await;
        // Dropped instead after a refusal mid-request: that cancels it.
        if answer.status == StatusCode::OK || answer.status == StatusCode::BAD_REQUEST {
            wire.close().await;
        }
        answer
    }

    async fn exchange(
        self,
        wire: &mut Wire,
        statements: &[Statement],
        front: &HttpFront,
    ) -> Answer {
        let too_large = || {
            Answer::new(
                StatusCode::INSUFFICIENT_STORAGE,
                json!({ "message": format!("the result is over http_max_response_bytes ({} bytes)", front.max_response_bytes) }),
            )
        };
        let mut results: Vec<Value> = Vec::with_capacity(statements.len());
        let mut current: Option<Table> = None;
        let mut error: Option<PgError> = None;
        let mut lsn: Option<String> = None;
        let mut size = 0usize;
        let main = usize::from(self.set_lsn);
        let segments = main + 1 + usize::from(self.ask_lsn);
        let mut segment = 0;
        let mut failed_block = false;
        // The batch's BEGIN answers first, in the statements' segment.
        let mut begin_pending = self.batch;
        while segment < segments {
            let m = match wire.next().await {
                Ok(m) => m,
                // After the statements' answer, only the position is lost.
                Err(_) if segment > main => break,
                Err(WireError::Fatal(e)) => {
                    error.get_or_insert(e);
                    break;
                }
                Err(WireError::TooLarge) => return too_large(),
                Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            };
            match m.tag {
                b'Z' => {
                    if segment == main && m.body.first() == Some(&b'E') {
                        failed_block = true;
                    }
                    segment += 1;
                }
                // The first error up to the statements' answer is the
                // answer; after it (the position's query, failing after a
                // failed batch or on a replica) it is not news.
                b'E' if segment <= main => {
                    error.get_or_insert(PgError::parse(&m.body));
                }
                // COPY: an HTTP request has no data to send, and no room
                // for a stream. Dropping the wire cancels it (see `wire`).
                b'G' | b'W' | b'H' => {
                    return Answer::new(
                        StatusCode::NOT_IMPLEMENTED,
                        json!({ "message": "COPY is not served over HTTP: use the WebSocket (/v2) or TCP" }),
                    )
                }
                b'C' if segment == main && begin_pending => begin_pending = false,
                _ if segment == main => {
                    let wanted = results.len() < statements.len();
                    match m.tag {
                        b'T' if wanted => current = Some(Table::describe(&m.body)),
                        b'D' if wanted => {
                            let t = current.get_or_insert_with(Table::default);
                            size += t.row(&m.body, self.raw_text, self.array_mode);
                            if size > front.max_response_bytes {
                                return too_large();
                            }
                        }
                        b'C' | b'I' if wanted => {
                            let tag = match m.tag {
                                b'C' => tag_text(&m.body),
                                _ => String::new(),
                            };
                            let t = current.take().unwrap_or_default();
                            results.push(t.finish(&tag, self.array_mode));
                        }
                        _ => {}
                    }
                }
                b'D' if segment == main + 1 => {
                    lsn = crate::protocol::messages::parse_data_row(&m.body)
                        .into_iter()
                        .next()
                        .flatten();
                }
                _ => {}
            }
        }
        if failed_block {
            // The batch's transaction is still open, failed: end it.
            let mut out = BytesMut::new();
            crate::protocol::messages::query(&mut out, "ROLLBACK");
            wire.send(&out);
            while let Ok(m) = wire.next().await {
                if m.tag == b'Z' {
                    break;
                }
            }
        }
        if let Some(e) = error {
            return Answer::new(StatusCode::BAD_REQUEST, error_json(&e));
        }
        let body = match self.batch {
            true => json!({ "results": results }),
            false => results.pop().unwrap_or(Value::Null),
        };
        let mut answer = Answer::new(StatusCode::OK, body);
        answer.lsn = lsn.or(self.min_lsn);
        answer
    }
}

/// Parse, Bind (text parameters, text results), Describe (with `describe`)
/// and Execute of the unnamed statement.
fn extended(
    out: &mut BytesMut,
    sql: &str,
    params: &[Option<String>],
    describe: bool,
) -> std::io::Result<()> {
    frontend::parse("", sql, std::iter::empty(), out)?;
    let bound = frontend::bind(
        "",
        "",
        std::iter::once(0i16),
        params.iter(),
        |p, buf| match p {
            Some(text) => {
                buf.extend_from_slice(text.as_bytes());
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        },
        std::iter::once(0i16),
        out,
    );
    if bound.is_err() {
        return Err(std::io::Error::other("too many parameters"));
    }
    if describe {
        frontend::describe(b'P', "", out)?;
    }
    frontend::execute("", 0, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        let (s, batch) = parse_body(br#"{"query": "SELECT $1", "params": [1, null]}"#).unwrap();
        assert!(!batch);
        assert_eq!(s[0].params, vec![Some("1".to_owned()), None]);
        let (s, batch) = parse_body(
            br#"{"queries": [{"query": "SELECT 1"}, {"query": "SELECT 2", "params": []}]}"#,
        )
        .unwrap();
        assert!(batch);
        assert_eq!(s.len(), 2);
        assert!(parse_body(b"{").unwrap_err().contains("not JSON"));
        assert!(parse_body(b"[]").is_err());
        assert!(parse_body(br#"{"query": 1}"#).is_err());
        assert!(parse_body(br#"{"query": "x", "params": 3}"#).is_err());
    }

    #[test]
    fn connection_strings() {
        assert_eq!(
            credentials("postgres://app:p%40ss@db.example.com/shop"),
            Some(("app".into(), "p@ss".into(), "shop".into()))
        );
        assert_eq!(
            credentials("postgresql://app:pw@h:5432"),
            Some(("app".into(), "pw".into(), "app".into()))
        );
        // As the driver sends it, and with options libpq knows.
        assert_eq!(
            credentials("postgresql://app:pw@h/db?application_name=pkg%3Anpm&sslmode=verify-full"),
            Some(("app".into(), "pw".into(), "db".into()))
        );
        assert_eq!(credentials("mysql://x"), None);
    }
}
