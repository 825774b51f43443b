//! Size guards for the session state (see `idle_session_state_stays_small`).

use super::*;
use crate::config::{Config, Overrides};
use crate::session::{ClientCount, LoggedIn, Session};

fn size<T>(_: &T) -> usize {
    std::mem::size_of::<T>()
}

/// An idle client costs its task's state plus a few small allocations;
/// this guards the state against growing back (it was 6 KB before the
/// login and forwarding phases were split and readiness was polled
/// directly). `benches/compare.sh` measures the resident total.
#[tokio::test]
async fn idle_session_state_stays_small() {
    let ov = Overrides {
        primary: Some("postgres://a:b@127.0.0.1:1/x".into()),
        listen: Some("127.0.0.1:0".into()),
        ..Default::default()
    };
    let app = crate::app::App::bind(Config::load(None, &ov).unwrap())
        .await
        .unwrap();
    let shared = app.shared();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut stream = crate::net::Stream::Plain(
        tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap(),
    );
    let other = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let task = size(&crate::session::run(
        shared.clone(),
        other,
        "127.0.0.1:1".parse().unwrap(),
    ));
    let config = shared.config.load_full();
    let (db, user) = (&config.databases[0], &config.users[0]);
    let login = LoggedIn {
        registration: shared
            .cancels
            .register("a/b".into(), "127.0.0.1:1".parse().unwrap()),
        _count: ClientCount::enter(&shared).unwrap(),
    };
    let session = Session {
        buf: BytesMut::new(),
        settings: None,
        params: Default::default(),
        pool: shared.pools.get(&config, db, user),
        mode: PoolMode::Transaction,
        login,
    };
    let mut f = Forwarder::new(&shared, &mut stream, session);
    let pump = size(&f.pump());
    // 1152 until the client id joined the user name for the last log line;
    // 1168 until named prepared statements were tracked; 1184 until TLS
    // towards clients (the stream kind, the negotiation's result); 1232
    // until `Forwarder::run` stopped taking `self` by value; 1000 until the
    // task was the session's future itself (no wrapper keeping its own
    // copy of the socket), the client's parameters were shared and the
    // shutdown signals became one future (760 since). Tokio allocates a
    // task in steps of 128 bytes: 760 makes it 896 bytes with its header.
    assert!(
        task <= 768,
        "a session task's state grew to {task} bytes (pump {pump})"
    );
    assert!(
        pump <= 320,
        "the forwarding loop's state grew to {pump} bytes"
    );
}
