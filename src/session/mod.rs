//! One task per client connection.
//!
//! - [`login`]: startup packet, SSL refusal, client authentication, greeting.
//! - [`forward`]: the state machine that moves frames between the client and
//!   its server connection and decides when that connection goes back.
//! - [`cancel`]: pgswitch-issued cancel keys and where they point right now.
//! - [`error`]: every way a session can fail, mapped to a SQLSTATE.
//! - [`effects`] (on `lexer`): what a statement text does to the session:
//!   settings to carry, or state that pins the client.

pub mod cancel;
pub mod effects;
mod error;
mod forward;
pub mod ledger;
mod lexer;
mod login;
mod refusal;
mod replay;
pub mod settings;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::config::ClientTlsMode;
use crate::net::Stream;

pub use error::SessionError;

use crate::pool::ParamSet;
use crate::protocol::messages::{self, Severity};
use crate::shared::Shared;
use login::Opening;

/// Time allowed from accept to the end of authentication, as Postgres's
/// authentication_timeout (60s there; a pooler can be stricter). Getting a
/// first server connection for the greeting is bounded by connect_timeout.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Startup parameters a client may set that Postgres reports back.
const CLIENT_SETTABLE: [&str; 5] = [
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "application_name",
];

/// Serves one client connection to the end. Errors are reported to the
/// client (FATAL) and logged here, once.
/// (A plain function returning the session's future, so that the task's
/// state is that future itself, not a wrapper around it.)
pub fn run(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let _ = tcp.set_nodelay(true);
    let (tls, mode) = {
        let g = &shared.config.load().general;
        (g.tls.clone(), g.client_tls)
    };
    serve_client(shared, Box::pin(negotiate(tls, mode, tcp, peer)), peer)
}

/// Serves a client of the serverless front (`crate::serverless`): a
/// WebSocket's wire protocol, or an HTTP request's, through one end of a
/// socket pair. Its TLS (if any) ended at the front, which also applied
/// `client_tls`; the password comes in clear, as Neon's driver sends it.
pub fn run_local(
    shared: Arc<Shared>,
    local: tokio::net::UnixStream,
    peer: SocketAddr,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let opened = Opened {
        buf: BytesMut::new(),
        binding: None,
        tls_required: false,
        cleartext: true,
    };
    let ready = Some((Stream::Local(Box::new(local)), Box::new(opened)));
    serve_client(shared, Box::pin(std::future::ready(ready)), peer)
}

/// The start of a connection, up to the login (a TLS negotiation, or
/// nothing): boxed, so that neither its state nor the socket it starts
/// from stays in the session's state while the client is connected.
type Negotiation = Pin<Box<dyn Future<Output = Option<(Stream, Box<Opened>)>> + Send>>;

/// A client's whole connection: `shared` is owned here, so the task's
/// state holds one copy of everything (a wrapper future would keep its own).
async fn serve_client(shared: Arc<Shared>, opening: Negotiation, peer: SocketAddr) {
    let shared = &*shared;
    let Some((mut stream, opened)) = opening.await else {
        return;
    };
    let mut who = Who::default();
    let result = serve(shared, &mut stream, opened, &peer, &mut who).await;
    let (user, id) = (&who.user, who.id);
    match result {
        Ok(()) => tracing::debug!(%peer, %user, id, "client disconnected"),
        Err(e) if e.reportable() => {
            if matches!(*e, SessionError::Auth(_) | SessionError::NoUser) {
                shared.metrics.auth_failures.inc();
            }
            let mut out = BytesMut::new();
            let message = e.client_message(user);
            messages::error_response(&mut out, Severity::Fatal, e.sqlstate(), &message, e.hint());
            let _ = stream.send(&out).await;
            tracing::info!(%peer, %user, id, sqlstate = e.sqlstate(), error = %e, "closing client connection");
        }
        Err(e) => tracing::debug!(%peer, %user, id, error = %e, "client connection lost"),
    }
    let _ = stream.shutdown().await;
}

/// Who a client is, for the log line at its end: its user name and its id
/// (the BackendKeyData pid, as in SHOW CLIENTS; 0 before login).
/// TLS or not, as the client asks and `client_tls` allows; `None` if the
/// client went away first.
async fn negotiate(
    tls: Option<Arc<crate::net::tls::ClientTls>>,
    mode: ClientTlsMode,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<(Stream, Box<Opened>)> {
    let tls = tls.filter(|_| mode != ClientTlsMode::Disable);
    let mut buf = BytesMut::new();
    let negotiated =
        tokio::time::timeout(LOGIN_TIMEOUT, tls::negotiate(tcp, tls.as_deref(), &mut buf)).await;
    let (stream, binding) = match negotiated {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "client left during TLS negotiation");
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, "client timed out during TLS negotiation");
            return None;
        }
    };
    let opened = Opened {
        buf,
        binding,
        tls_required: mode == ClientTlsMode::Require,
        cleartext: false,
    };
    Some((stream, Box::new(opened)))
}

/// What the TLS negotiation left for the login (boxed: the session's state
/// should not carry it).
struct Opened {
    /// Bytes read past it.
    buf: BytesMut,
    /// The `tls-server-end-point` hash, for a TLS client.
    binding: Option<Vec<u8>>,
    /// `client_tls = require`.
    tls_required: bool,
    /// Ask for the password in clear (the serverless front).
    cleartext: bool,
}

#[derive(Default)]
struct Who {
    user: String,
    id: i32,
}

/// Login, then forwarding. Login is boxed and freed before forwarding
/// starts; the forwarder's state is built in a block so that nothing else
/// stays allocated beside it for the (long, mostly idle) session.
async fn serve(
    shared: &Shared,
    stream: &mut Stream,
    opened: Box<Opened>,
    peer: &SocketAddr,
    who: &mut Who,
) -> Result<(), Box<SessionError>> {
    let forwarder = {
        let login = Box::pin(login(shared, stream, opened, peer, who));
        // A forced shutdown also ends logins (and their wait for a server).
        let session = tokio::select! {
            r = login => r.map_err(Box::new)?,
            _ = shared.hard_shutdown.cancelled() => return Err(Box::new(SessionError::Shutdown)),
        };
        let session = match session {
            Login::Cancel => return Ok(()),
            Login::Admin(admin) => {
                // Boxed whole: the console's state stays out of every
                // client session's.
                return Box::pin(admin_session(shared, stream, admin, &who.user))
                    .await
                    .map_err(Box::new);
            }
            Login::Session(session) => session,
        };
        forward::Forwarder::new(shared, stream, session)
    };
    // Moved out of the block first: the state then keeps one Forwarder,
    // not room for the block's as well (1184 bytes instead of 984).
    let mut forwarder = forwarder;
    forwarder.run().await
}

/// The admin console, holding the admin's login (cancel key, client count)
/// until it ends.
async fn admin_session(
    shared: &Shared,
    stream: &mut Stream,
    admin: Admin<'_>,
    user: &str,
) -> Result<(), SessionError> {
    let Admin {
        buf,
        console,
        login: _login,
    } = admin;
    crate::admin::serve(shared, stream, buf, user, console).await
}

/// How a login ended.
enum Login<'a> {
    /// It was a cancel request.
    Cancel,
    Session(Session<'a>),
    /// An admin opened the console (database `pgswitch`).
    Admin(Admin<'a>),
}

/// An admin console client.
struct Admin<'a> {
    buf: BytesMut,
    console: crate::admin::Console,
    login: LoggedIn<'a>,
}

/// What the admin console reports about itself at login.
fn admin_params() -> ParamSet {
    let mut p = ParamSet::default();
    for (k, v) in [
        (
            "server_version",
            concat!("16.0 (pgswitch ", env!("CARGO_PKG_VERSION"), ")"),
        ),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("application_name", "pgswitch admin"),
    ] {
        p.set(k, v);
    }
    p
}

/// A logged-in client, ready for the forwarding phase.
pub(crate) struct Session<'a> {
    buf: BytesMut,
    /// Settings from the startup packet's `options` (`-c name=value`).
    settings: Option<Box<settings::Settings>>,
    /// Shared with other clients told the same (`PoolSet::share_params`).
    params: Arc<ParamSet>,
    pool: Arc<crate::pool::PoolSet>,
    mode: crate::config::PoolMode,
    login: LoggedIn<'a>,
}

/// What a logged-in client holds until it leaves: its cancel key and its
/// place under max_client_conn.
pub(crate) struct LoggedIn<'a> {
    registration: cancel::Registration<'a>,
    _count: ClientCount<'a>,
}

/// Startup, authentication and greeting; `None` for a cancel request.
async fn login<'a>(
    shared: &'a Shared,
    stream: &mut Stream,
    opened: Box<Opened>,
    peer: &SocketAddr,
    who: &mut Who,
) -> Result<Login<'a>, SessionError> {
    let Opened {
        mut buf,
        binding,
        tls_required,
        cleartext,
    } = *opened;
    let deadline = tokio::time::Instant::now() + LOGIN_TIMEOUT;
    let opening = tokio::time::timeout_at(deadline, login::read_opening(stream, &mut buf))
        .await
        .map_err(|_| SessionError::LoginTimeout)??;
    let startup = match opening {
        Opening::Cancel {
            pid,
            secret,
            forwarded,
        } => {
            forward_cancel(shared, pid, &secret, forwarded).await;
            return Ok(Login::Cancel);
        }
        Opening::Startup(m) => m,
    };
    // As `hostssl` refuses a plain login, before any password is asked.
    if tls_required && !stream.is_tls() {
        return Err(SessionError::TlsRequired);
    }
    let count = ClientCount::enter(shared)?;
    let user_name = startup.param("user").unwrap_or_default().to_owned();
    if user_name.is_empty() {
        return Err(SessionError::Protocol(
            "no PostgreSQL user name specified in startup packet".into(),
        ));
    }
    who.user.clone_from(&user_name);
    let db_name = startup
        .param("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&user_name)
        .to_owned();
    let config = &shared.config.load_full();
    let listed = config.user(&user_name);
    // A user the config does not list is looked up on the database's
    // primary (auth_query), if the database says how.
    let lookup = match listed {
        Some(_) => None,
        None => config
            .database(&db_name)
            .and_then(|db| Some((db, db.auth.as_ref()?))),
    };
    let found = match lookup {
        Some((db, auth)) => {
            let g = &config.general;
            let find =
                shared
                    .lookups
                    .find(db, auth, &user_name, g.auth_cache_ttl, g.connect_timeout);
            let found = tokio::time::timeout_at(deadline, find)
                .await
                .map_err(|_| SessionError::LoginTimeout)?
                .map_err(SessionError::Lookup)?;
            Some(found)
        }
        None => None,
    };
    let looked_up_auth = found
        .as_ref()
        .and_then(|f| f.stored.as_ref())
        .map(|s| s.client_auth());
    let auth = async {
        login::negotiate(stream, &startup).await?;
        let auth = listed.map(|u| &u.auth).or(looked_up_auth.as_ref());
        if cleartext {
            let (passwords, ttl) = (&shared.passwords, config.general.auth_cache_ttl);
            return login::authenticate_cleartext(
                stream, &mut buf, &user_name, auth, passwords, ttl,
            )
            .await;
        }
        login::authenticate(stream, &mut buf, &user_name, auth, binding.as_deref()).await
    };
    let proved = tokio::time::timeout_at(deadline, auth)
        .await
        .map_err(|_| SessionError::LoginTimeout)?;
    let client_key = match proved {
        Ok(key) => key,
        Err(e) => {
            // A kept verifier that failed a password may be stale (ALTER
            // ROLE ... PASSWORD): the next login reads it again.
            let refused = matches!(e, SessionError::Auth(_) | SessionError::NoUser);
            if refused && found.as_ref().is_some_and(|f| f.cached) {
                shared.lookups.forget(&db_name, &user_name);
            }
            return Err(e);
        }
    };
    let owned;
    let user = match (listed, &found) {
        (Some(u), _) => u,
        (None, Some(f)) => {
            owned = looked_up_user(&user_name, f, client_key).ok_or(SessionError::NoUser)?;
            &owned
        }
        (None, None) => return Err(SessionError::NoUser),
    };
    // `pgbouncer` opens the console with PgBouncer's tables, unless a
    // database of that name is configured.
    let console = match db_name.as_str() {
        crate::admin::DATABASE => Some(crate::admin::Console::Pgswitch),
        crate::admin::PGBOUNCER_DATABASE if config.database(&db_name).is_none() => {
            Some(crate::admin::Console::Pgbouncer)
        }
        _ => None,
    };
    if let Some(console) = console {
        if !config.general.admin_users.contains(&user.name) {
            return Err(SessionError::NotAdmin(user.name.clone()));
        }
        let registration = shared.cancels.register("pgswitch (admin)".into(), *peer);
        let slot = &registration.slot;
        who.id = slot.pid;
        login::greet(
            stream,
            &admin_params(),
            &ParamSet::default(),
            slot.pid,
            slot.secret,
        )
        .await?;
        tracing::info!(user = %user_name, id = slot.pid, %peer, "admin console opened");
        return Ok(Login::Admin(Admin {
            buf,
            console,
            login: LoggedIn {
                registration,
                _count: count,
            },
        }));
    }
    let db = config
        .database(&db_name)
        .ok_or_else(|| SessionError::NoDatabase(db_name.clone()))?;
    let pool = shared.pools.get(config, db, user);
    let server_params = pool.login_params().await?;
    let mut params = server_params.tracked_only();
    for name in CLIENT_SETTABLE {
        if let Some(v) = startup.param(name) {
            params.set(name, v);
        }
    }
    let params = pool.share_params(params);
    let registration = shared.cancels.register(pool.name.clone(), *peer);
    let slot = &registration.slot;
    who.id = slot.pid;
    login::greet(stream, &params, &server_params, slot.pid, slot.secret).await?;
    tracing::debug!(user = %user_name, database = %db_name, id = slot.pid, %peer, "client logged in");
    let settings = startup
        .param("options")
        .map(settings::Settings::from_options)
        .filter(|s| !s.is_empty())
        .map(Box::new);
    Ok(Login::Session(Session {
        buf,
        settings,
        params,
        pool,
        mode: config.pool_mode(db),
        login: LoggedIn {
            registration,
            _count: count,
        },
    }))
}

/// A user looked up with `auth_query`, after its client proved itself:
/// the server login uses the keys of that proof (SCRAM) or the md5
/// verifier, never a password.
fn looked_up_user(
    name: &str,
    found: &crate::auth::lookup::Found,
    client_key: Option<[u8; 32]>,
) -> Option<crate::config::User> {
    use crate::auth::lookup::Stored;
    use crate::auth::ServerSecret;
    let secret = match (found.stored.as_ref()?, client_key) {
        (Stored::Scram(v), Some(client_key)) => {
            ServerSecret::Scram(crate::auth::scram::ScramKeys {
                client_key,
                server_key: v.server_key,
            })
        }
        (Stored::Md5(hash), _) => ServerSecret::Md5 { hash: hash.clone() },
        (Stored::Scram(_), None) => return None,
    };
    Some(crate::config::User {
        name: name.to_owned(),
        auth: found.stored.as_ref()?.client_auth(),
        server_user: name.to_owned(),
        server_password: None,
        server_secret: Some(secret),
        pool_size: None,
    })
}

/// A CancelRequest reaches the server only while the client holds one.
/// A key this instance does not know goes to its peers (unless a peer sent
/// it: then it was meant for this instance alone).
async fn forward_cancel(shared: &Shared, pid: i32, secret: &[u8], forwarded: bool) {
    use cancel::CancelTarget;
    match shared.cancels.target(pid, secret) {
        CancelTarget::Server((addr, key)) => crate::pool::cancel(&addr, key).await,
        CancelTarget::NotHere if !forwarded => {
            let peers = shared.config.load().general.peers.clone();
            match peers.is_empty() {
                true => tracing::debug!(
                    pid,
                    "cancel request for no client of this instance; ignored"
                ),
                false => cancel::forward_to_peers(&peers, pid, secret).await,
            }
        }
        _ => tracing::debug!(pid, "cancel request for no running query; ignored"),
    }
}

/// Counts logged-in clients against max_client_conn.
pub(crate) struct ClientCount<'a>(&'a Shared);

impl<'a> ClientCount<'a> {
    pub(crate) fn enter(shared: &'a Shared) -> Result<Self, SessionError> {
        let max = shared.config.load().general.max_client_conn;
        let before = shared.clients.fetch_add(1, Ordering::AcqRel);
        let guard = ClientCount(shared);
        if before >= max {
            return Err(SessionError::TooManyClients(max));
        }
        Ok(guard)
    }
}

impl Drop for ClientCount<'_> {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::AcqRel);
    }
}
