//! Cancel keys. Each client gets a pgswitch-issued BackendKeyData; its slot
//! names the server connection serving it right now, if any. A
//! CancelRequest is forwarded with that server's own key, or dropped when
//! the client is idle, so it can never reach another client's query.

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
    pub pool: Box<str>,
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
    clients: Mutex<HashMap<i32, Arc<ClientSlot>>>,
}

impl Default for CancelRegistry {
    fn default() -> Self {
        CancelRegistry {
            next_pid: AtomicI32::new(1),
            clients: Mutex::new(HashMap::new()),
        }
    }
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
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Arc<ClientSlot>>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every registered client.
    pub fn clients(&self) -> Vec<Arc<ClientSlot>> {
        let mut all: Vec<_> = self.lock().values().cloned().collect();
        all.sort_by_key(|c| c.pid);
        all
    }

    pub fn register(&self, pool: &str, peer: std::net::SocketAddr) -> Registration<'_> {
        // Wrapping pids are fine: a live pid is never handed out twice.
        let mut clients = self.lock();
        let mut pid = self.next_pid.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        while pid == 0 || clients.contains_key(&pid) {
            pid = self.next_pid.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        }
        let slot = Arc::new(ClientSlot {
            pid,
            secret: rand::random(),
            pool: pool.into(),
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

    /// The server to cancel for a CancelRequest, if the key is valid and the
    /// client has a query on a server right now.
    pub fn target(&self, pid: i32, secret: &[u8]) -> Option<ServerKey> {
        let slot = self.lock().get(&pid).cloned()?;
        let ok = secret.len() == 4 && crate::auth::ct_eq(secret, &slot.secret.to_be_bytes());
        if !ok {
            return None;
        }
        slot.current()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_only_with_right_key_and_attached_server() {
        let reg = CancelRegistry::default();
        let r = reg.register("app/app", "127.0.0.1:5000".parse().unwrap());
        let (pid, secret) = (r.slot.pid, r.slot.secret.to_be_bytes());
        assert!(
            reg.target(pid, &secret).is_none(),
            "idle client: nothing to cancel"
        );
        let addr = Arc::new(ServerAddr::parse("postgres://u@127.0.0.1:1/db").unwrap());
        r.slot.attach((addr, (42, 7)));
        assert_eq!(reg.target(pid, &secret).map(|k| k.1), Some((42, 7)));
        let wrong = (r.slot.secret.wrapping_add(1)).to_be_bytes();
        assert!(reg.target(pid, &wrong).is_none());
        r.slot.detach();
        assert!(reg.target(pid, &secret).is_none());
        drop(r);
        assert!(reg.target(pid, &secret).is_none());
    }
}
