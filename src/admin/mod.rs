//! The admin console: the virtual database `pgswitch`, served by pgswitch
//! itself over the Postgres protocol so that psql works as a client.
//!
//! - [`command`]: the command language (`SHOW POOLS`, `SHUTDOWN`, ...),
//!   parsed from a simple Query.
//! - [`show`]: the tables the `SHOW` commands answer with.
//! - [`table`]: a result set and its wire encoding.
//!
//! Only admins (`admin_users`) may connect. Only the simple query protocol
//! is spoken; an extended-protocol request gets an error at its Sync.

pub mod command;
pub mod pgbouncer;
pub mod show;
pub mod table;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncReadExt;

use crate::protocol::frame::{peek_header, HEADER_LEN};
use crate::protocol::messages::{self, Severity};
use crate::session::SessionError;
use crate::shared::Shared;
use command::{AdminError, Command};
use std::time::Duration;

/// The database name that opens the console.
pub const DATABASE: &str = "pgswitch";

/// The database name that opens the console with PgBouncer's tables, for
/// tools that read PgBouncer's (see [`pgbouncer`]).
pub const PGBOUNCER_DATABASE: &str = "pgbouncer";

/// Which console a client opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    Pgswitch,
    /// `SHOW POOLS`, `STATS`, `CLIENTS`, `SERVERS`, `CONFIG` and `VERSION`
    /// answer with PgBouncer 1.24's columns.
    Pgbouncer,
}

/// Largest admin command accepted (a `SHOW ROUTE` of a long statement).
const MAX_COMMAND: usize = 1 << 20;

/// Answers admin commands until the client leaves. `buf` holds whatever
/// the login left unread.
pub async fn serve(
    shared: &Shared,
    stream: &mut crate::net::Stream,
    mut buf: BytesMut,
    user: &str,
    console: Console,
) -> Result<(), SessionError> {
    // An extended-protocol request being refused: skip to its Sync.
    let mut refusing = false;
    loop {
        let (tag, len) = loop {
            if let Some((tag, len)) = peek_header(&buf)? {
                if len > MAX_COMMAND {
                    return Err(SessionError::Protocol(format!(
                        "admin message of {len} bytes is over the {MAX_COMMAND}-byte limit"
                    )));
                }
                if buf.len() >= HEADER_LEN + len {
                    break (tag, len);
                }
            }
            // Between commands an admin is idle: a shutdown ends the
            // console as it ends idle clients.
            let read = tokio::select! {
                r = stream.read_buf(&mut buf) => r.map_err(SessionError::ClientGone)?,
                _ = shared.shutdown.cancelled() => return Err(SessionError::Shutdown),
            };
            if read == 0 {
                return Ok(());
            }
        };
        buf.advance(HEADER_LEN);
        let body = buf.split_to(len);
        let mut out = BytesMut::new();
        match tag {
            b'X' => return Ok(()),
            b'Q' => {
                let text = String::from_utf8_lossy(body.strip_suffix(b"\0").unwrap_or(&body));
                let stop = answer(shared, &text, user, console, &mut out).await;
                messages::ready_for_query(&mut out, b'I');
                stream.send(&out).await.map_err(SessionError::ClientGone)?;
                if stop {
                    shared.stop();
                    return Ok(());
                }
                continue;
            }
            b'S' => {
                if std::mem::take(&mut refusing) {
                    messages::error_response(
                        &mut out,
                        Severity::Error,
                        "0A000",
                        "the pgswitch admin console speaks only the simple query protocol",
                        Some("use psql, or simple_query in your driver"),
                    );
                }
                messages::ready_for_query(&mut out, b'I');
            }
            b'H' => {}
            _ => refusing = true,
        }
        if !out.is_empty() {
            stream.send(&out).await.map_err(SessionError::ClientGone)?;
        }
    }
}

/// Runs one Query's command and appends the reply (without
/// ReadyForQuery). `true` asks the caller to shut pgswitch down.
async fn answer(
    shared: &Shared,
    text: &str,
    user: &str,
    console: Console,
    out: &mut BytesMut,
) -> bool {
    let result = match Command::parse(text) {
        Err(e) => Err(e),
        Ok(Command::Empty) => {
            messages::empty_query(out);
            Ok(())
        }
        Ok(Command::Shutdown) => {
            tracing::warn!(%user, "SHUTDOWN from the admin console");
            messages::command_complete(out, "SHUTDOWN");
            return true;
        }
        Ok(Command::Show(what)) => match console {
            Console::Pgbouncer => pgbouncer::table(shared, &what),
            Console::Pgswitch => show::table(shared, &what),
        }
        .map(|t| t.encode(out, "SHOW")),
        Ok(Command::Pause(db)) => pause(shared, db.as_deref(), user).await.map(|()| {
            messages::command_complete(out, "PAUSE");
        }),
        Ok(Command::Reload) => crate::reload::reload(shared)
            .map(|notes| {
                tracing::warn!(%user, "RELOAD from the admin console");
                for note in notes {
                    messages::notice(out, "00000", &note);
                }
                messages::command_complete(out, "RELOAD");
            })
            .map_err(AdminError::from),
        Ok(Command::Resume(db)) => known(shared, db.as_deref()).map(|()| {
            tracing::warn!(%user, database = db.as_deref().unwrap_or("(all)"), "RESUME from the admin console");
            shared.pause.resume(db.as_deref());
            messages::command_complete(out, "RESUME");
        }),
    };
    if let Err(e) = result {
        let hint = matches!(e, AdminError::Unknown(_)).then_some(command::HELP);
        messages::error_response(out, Severity::Error, e.sqlstate(), &e.to_string(), hint);
    }
    false
}

/// How long PAUSE waits for lent-out server connections to come back.
const PAUSE_WAIT: Duration = Duration::from_secs(30);

async fn pause(shared: &Shared, db: Option<&str>, user: &str) -> Result<(), AdminError> {
    known(shared, db)?;
    tracing::warn!(%user, database = db.unwrap_or("(all)"), "PAUSE from the admin console");
    shared.pause.pause(db);
    let busy = || {
        shared
            .pools
            .all()
            .iter()
            .filter(|s| db.is_none_or(|d| s.database == d))
            .map(|s| {
                let mut n = lent(&s.primary);
                for p in s.replicas.iter().flat_map(|r| r.pools()) {
                    n += lent(p);
                }
                n
            })
            .sum::<usize>()
    };
    let deadline = tokio::time::Instant::now() + PAUSE_WAIT;
    loop {
        let n = busy();
        if n == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(AdminError::StillBusy(n, PAUSE_WAIT));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn lent(pool: &crate::pool::Pool) -> usize {
    let s = pool.status();
    s.size.saturating_sub(s.available)
}

fn known(shared: &Shared, db: Option<&str>) -> Result<(), AdminError> {
    match db {
        Some(d) if shared.config.load().database(d).is_none() => {
            Err(AdminError::NoDatabase(d.to_owned()))
        }
        _ => Ok(()),
    }
}
