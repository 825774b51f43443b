//! Cancel keys. Each client gets a pgswitch-issued BackendKeyData; its slot
//! names the server connection serving it right now, if any. A
//! CancelRequest is forwarded with that server's own key, or dropped when
//! the client is idle, so it can never reach another client's query.
//!
//! Several instances behind one address (a Kubernetes Service) share their
//! clients' cancels: a key's pid carries the instance's id in bits 24-30
//! (`instance_id`), and a CancelRequest for a client this instance does
//! not have goes to every peer (`peers`) under a code of pgswitch's own,
//! which a peer serves only from its own clients ([`forward_to_peers`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::ServerAddr;

/// The server connection (address and its BackendKeyData) serving a client.
pub type ServerKey = (Arc<ServerAddr>, (i32, i32));

pub struct ClientSlot {
    /// The client's id: its BackendKeyData pid, also in logs and in the
    /// admin console's SHOW CLIENTS.
    pub pid: i32,
    pub secret: i32,
    /// `database/user`, where the client came from, and since when.
    pub pool: Arc<str>,
    pub peer: std::net::SocketAddr,
    pub since: std::time::Instant,
    server: Mutex<Option<ServerKey>>,
    /// Waiting for a server connection; pinned to one (SHOW CLIENTS).
    pub waiting: std::sync::atomic::AtomicBool,
    pub pinned: std::sync::atomic::AtomicBool,
}

impl ClientSlot {
    pub fn attach(&self, key: ServerKey) {
        *self.server.lock().unwrap_or_else(|p| p.into_inner()) = Some(key);
    }

    pub fn detach(&self) {
        *self.server.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The server connection serving the client right now, if any.
    pub fn current(&self) -> Option<ServerKey> {
        self.server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

pub struct CancelRegistry {
    next_pid: AtomicI32,
    /// This instance's id, in every pid it issues.
    instance: i32,
    clients: Mutex<HashMap<i32, Arc<ClientSlot>>>,
}

impl Default for CancelRegistry {
    fn default() -> Self {
        CancelRegistry::new(0)
    }
}

/// Pids count in the low 24 bits; the instance id sits above them.
const COUNTER_BITS: u32 = 24;

/// What a CancelRequest's key names here.
#[derive(Debug, PartialEq, Eq)]
pub enum CancelTarget {
    /// A client of this instance, with this query on a server.
    Server(ServerKey),
    /// A client of this instance with nothing running.
    Idle,
    /// No client of this instance has this key.
    NotHere,
}

/// Removes the client's slot when its session ends.
pub struct Registration<'a> {
    registry: &'a CancelRegistry,
    pub slot: Arc<ClientSlot>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.slot.pid);
    }
}

impl CancelRegistry {
    /// A registry whose pids carry `instance` (0-127).
    pub fn new(instance: u8) -> Self {
        CancelRegistry {
            next_pid: AtomicI32::new(1),
            instance: i32::from(instance & 0x7f) << COUNTER_BITS,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Arc<ClientSlot>>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every registered client.
    pub fn clients(&self) -> Vec<Arc<ClientSlot>> {
        let mut all: Vec<_> = self.lock().values().cloned().collect();
        all.sort_by_key(|c| c.pid);
        all
    }

    pub fn register(&self, pool: Arc<str>, peer: std::net::SocketAddr) -> Registration<'_> {
        // Wrapping pids are fine: a live pid is never handed out twice.
        let mut clients = self.lock();
        let counter = (1 << COUNTER_BITS) - 1;
        let next = || self.instance | (self.next_pid.fetch_add(1, Ordering::Relaxed) & counter);
        let mut pid = next();
        while pid & counter == 0 || clients.contains_key(&pid) {
            pid = next();
        }
        let slot = Arc::new(ClientSlot {
            pid,
            secret: rand::random(),
            pool,
            peer,
            since: std::time::Instant::now(),
            server: Mutex::new(None),
            waiting: Default::default(),
            pinned: Default::default(),
        });
        clients.insert(pid, slot.clone());
        Registration {
            registry: self,
            slot,
        }
    }

    /// What a CancelRequest's key names: the server to cancel, if the key
    /// is one of this instance's and its client has a query on a server
    /// right now.
    pub fn target(&self, pid: i32, secret: &[u8]) -> CancelTarget {
        let Some(slot) = self.lock().get(&pid).cloned() else {
            return CancelTarget::NotHere;
        };
        let ok = secret.len() == 4 && crate::auth::ct_eq(secret, &slot.secret.to_be_bytes());
        match (ok, slot.current()) {
            (false, _) => CancelTarget::NotHere,
            (true, Some(server)) => CancelTarget::Server(server),
            (true, None) => CancelTarget::Idle,
        }
    }
}

/// Sends a CancelRequest this instance has no client for to every address
/// of every peer (a name may resolve to several, as a headless Service's
/// does), at once, under pgswitch's peer code; each peer acts on it only
/// for its own client. Fire and forget, 2 s per peer.
pub async fn forward_to_peers(peers: &[String], pid: i32, secret: &[u8]) {
    let mut packet = Vec::with_capacity(12 + secret.len());
    packet.extend_from_slice(&(12 + secret.len() as i32).to_be_bytes());
    packet.extend_from_slice(&crate::protocol::startup::PEER_CANCEL_REQUEST.to_be_bytes());
    packet.extend_from_slice(&pid.to_be_bytes());
    packet.extend_from_slice(secret);
    let send = |addr: std::net::SocketAddr| {
        let packet = &packet;
        async move {
            use tokio::io::AsyncWriteExt;
            let sent = tokio::time::timeout(std::time::Duration::from_secs(2), async {
                let mut s = tokio::net::TcpStream::connect(addr).await?;
                s.write_all(packet).await?;
                s.shutdown().await
            })
            .await;
            if !matches!(sent, Ok(Ok(()))) {
                tracing::debug!(%addr, "could not pass a cancel request to a peer");
            }
        }
    };
    let (addrs, failed) = crate::net::peers::resolve(peers).await;
    for (peer, error) in failed {
        tracing::warn!(%peer, %error, "peer name does not resolve; cancel requests cannot reach it");
    }
    futures_util::future::join_all(addrs.into_iter().map(send)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_only_with_right_key_and_attached_server() {
        let reg = CancelRegistry::default();
        let r = reg.register("app/app".into(), "127.0.0.1:5000".parse().unwrap());
        let (pid, secret) = (r.slot.pid, r.slot.secret.to_be_bytes());
        assert_eq!(
            reg.target(pid, &secret),
            CancelTarget::Idle,
            "idle client: nothing to cancel"
        );
        let addr = Arc::new(ServerAddr::parse("postgres://u@127.0.0.1:1/db").unwrap());
        r.slot.attach((addr, (42, 7)));
        assert!(matches!(
            reg.target(pid, &secret),
            CancelTarget::Server((_, (42, 7)))
        ));
        let wrong = (r.slot.secret.wrapping_add(1)).to_be_bytes();
        assert_eq!(reg.target(pid, &wrong), CancelTarget::NotHere);
        r.slot.detach();
        assert_eq!(reg.target(pid, &secret), CancelTarget::Idle);
        drop(r);
        assert_eq!(reg.target(pid, &secret), CancelTarget::NotHere);
    }

    #[test]
    fn pids_carry_the_instance_id() {
        let reg = CancelRegistry::new(5);
        let a = reg.register("app/app".into(), "127.0.0.1:5000".parse().unwrap());
        let b = reg.register("app/app".into(), "127.0.0.1:5000".parse().unwrap());
        assert_eq!(a.slot.pid >> COUNTER_BITS, 5);
        assert_eq!(b.slot.pid >> COUNTER_BITS, 5);
        assert_ne!(a.slot.pid, b.slot.pid);
        assert!(a.slot.pid > 0);
        assert_eq!(
            CancelRegistry::new(200)
                .register("x".into(), "127.0.0.1:1".parse().unwrap())
                .slot
                .pid
                >> COUNTER_BITS,
            200 & 0x7f
        );
    }
}
