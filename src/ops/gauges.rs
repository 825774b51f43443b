//! Gauges that describe state rather than count events: read from the
//! pools, the client count and the replica monitor when `/metrics` is
//! scraped, so that the forwarding path never pays for them.

use std::sync::atomic::Ordering;

use crate::pool::Pool;
use crate::shared::Shared;

/// Sets every state gauge from the current pools and monitor snapshots.
pub fn refresh(shared: &Shared) {
    let m = &shared.metrics;
    let mut active = 0i64;
    for set in shared.pools.all() {
        let name = &*set.name;
        m.pool_size
            .with_label_values(&[name])
            .set(set.max_size() as i64);
        active += server_gauges(shared, name, &set.primary);
        if let Some(replicas) = &set.replicas {
            for pool in replicas.pools() {
                active += server_gauges(shared, name, pool);
            }
            let snap = replicas.snapshot();
            m.primary_in_recovery
                .with_label_values(&[name])
                .set(i64::from(snap.primary_in_recovery));
            for r in &snap.replicas {
                let labels = [name, &r.addr.to_string()];
                m.replica_in_rotation
                    .with_label_values(&labels)
                    .set(i64::from(r.in_rotation));
                m.replica_lag_bytes
                    .with_label_values(&labels)
                    .set(r.lag_bytes.map_or(-1, |b| b as i64));
                m.replica_lag_seconds
                    .with_label_values(&labels)
                    .set(r.lag_time.map_or(-1.0, |t| t.as_secs_f64()));
            }
        }
    }
    let connected = shared.clients.load(Ordering::Relaxed) as i64;
    let waiting = m.clients_waiting.get();
    m.clients.with_label_values(&["active"]).set(active);
    m.clients
        .with_label_values(&["idle"])
        .set((connected - active - waiting).max(0));
}

/// Server connection gauges of one server's pool; returns how many are lent
/// out (each to one client).
fn server_gauges(shared: &Shared, pool_name: &str, pool: &Pool) -> i64 {
    let status = pool.status();
    let server = pool.manager().target.addr.to_string();
    let idle = status.available as i64;
    let active = status.size as i64 - idle;
    let g = &shared.metrics.server_connections;
    g.with_label_values(&[pool_name, &server, "active"])
        .set(active);
    g.with_label_values(&[pool_name, &server, "idle"]).set(idle);
    active
}
