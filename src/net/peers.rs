//! The other instances (`peers`): their addresses, for forwarding cancel
//! requests (`session::cancel`), and their number, for dividing
//! `max_server_connections` (`pool::limit`). A name may resolve to several
//! addresses, and to this instance's own (a headless Service's name does).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How often the peers are counted again (pods come and go).
const RECOUNT: Duration = Duration::from_secs(30);

/// Every address the peers resolve to, once each, and the names that did
/// not resolve (with why).
pub async fn resolve(peers: &[String]) -> (Vec<SocketAddr>, Vec<(String, String)>) {
    let mut addrs = BTreeSet::new();
    let mut failed = Vec::new();
    for peer in peers {
        match tokio::net::lookup_host(peer.as_str()).await {
            Ok(found) => addrs.extend(found),
            Err(e) => failed.push((peer.clone(), e.to_string())),
        }
    }
    (addrs.into_iter().collect(), failed)
}

/// Whether `addr` is this process's own listener at `listen`: same port,
/// and the same address, or (listening on all addresses) one of this
/// host's.
pub fn is_self(addr: SocketAddr, listen: SocketAddr) -> bool {
    if addr.port() != listen.port() {
        return false;
    }
    if listen.ip() == addr.ip() {
        return true;
    }
    // Only an address of this host can be bound.
    listen.ip().is_unspecified() && std::net::UdpSocket::bind((addr.ip(), 0)).is_ok()
}

/// This instance plus the peers' addresses that are not it.
pub fn count(addrs: &[SocketAddr], listen: SocketAddr) -> usize {
    1 + addrs.iter().filter(|a| !is_self(**a, listen)).count()
}

/// Counts the instances every [`RECOUNT`] while `instances` is not
/// configured and there are peers, and hands a changed count to the
/// pools' shares. Logs a change of the count, and a peer name that stops
/// (or starts again) resolving, once.
pub async fn keep_count(shared: Arc<crate::shared::Shared>) {
    let mut tick = tokio::time::interval(RECOUNT);
    let mut last = (1, Vec::new());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.shutdown.cancelled() => return,
        }
        let cfg = shared.config.load_full();
        let g = &cfg.general;
        if g.instances.is_some() || g.peers.is_empty() {
            continue;
        }
        let (addrs, failed) = resolve(&g.peers).await;
        let n = count(&addrs, g.listen);
        let names: Vec<String> = failed.iter().map(|(p, _)| p.clone()).collect();
        if names != last.1 {
            for (peer, error) in &failed {
                tracing::warn!(%peer, %error, "peer name does not resolve; it is not counted among the instances");
            }
            if failed.is_empty() {
                tracing::info!("every peer name resolves again");
            }
        }
        if n != last.0 {
            tracing::info!(
                instances = n,
                "instances sharing max_server_connections counted from the peers"
            );
            shared.pools.limits.set_counted(n, &cfg);
        }
        last = (n, names);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_instance_is_not_counted_twice() {
        let listen: SocketAddr = "127.0.0.1:6432".parse().unwrap();
        let addrs: Vec<SocketAddr> = ["127.0.0.1:6432", "127.0.0.1:6433", "10.255.255.1:6432"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(count(&addrs, listen), 3);
        let any: SocketAddr = "0.0.0.0:6432".parse().unwrap();
        assert!(is_self("127.0.0.1:6432".parse().unwrap(), any));
        assert!(!is_self("127.0.0.1:6433".parse().unwrap(), any));
        // 192.0.2.0/24 is reserved for documentation: never this host's.
        assert!(!is_self("192.0.2.7:6432".parse().unwrap(), any));
        assert_eq!(count(&[], listen), 1);
    }
}
