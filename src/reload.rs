//! Live reload (SIGHUP, or RELOAD in the admin console): the config file is
//! read again with the same flags and env vars, validated, and swapped in.
//! Pools are resized or rebuilt (`Pools::reload`) without closing any
//! client. An invalid file changes nothing. Settings fixed at start-up
//! (listen addresses, worker threads) keep their running values and are
//! reported as needing a restart.

use std::sync::Arc;

use crate::config::Problems;
use crate::shared::Shared;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    #[error("pgswitch was started without a config file (--config); there is nothing to reload")]
    NoFile,
    #[error("the new configuration is invalid; the running one is kept:\n{0}")]
    Invalid(Problems),
}

/// Reloads the config; returns what changed, one line each.
pub fn reload(shared: &Shared) -> Result<Vec<String>, ReloadError> {
    let old = shared.config.load_full();
    // Without a file, flags may still name a certificate to re-read.
    if old.source.is_none() && old.general.tls.is_none() {
        return Err(ReloadError::NoFile);
    }
    let mut new = old.reread().map_err(ReloadError::Invalid)?;
    let mut notes = Vec::new();
    let (o, n) = (&old.general, &mut new.general);
    if o.listen != n.listen {
        notes.push(format!(
            "listen: {} -> {} needs a restart; still listening on {}",
            o.listen, n.listen, o.listen
        ));
        n.listen = o.listen;
    }
    if o.http.as_ref().map(|h| h.listen) != n.http.as_ref().map(|h| h.listen) {
        notes.push(
            "http_listen changes need a restart; the serverless front is unchanged".to_owned(),
        );
        n.http = match (&o.http, n.http.take()) {
            (Some(old), Some(new)) => Some(crate::config::HttpFront {
                listen: old.listen,
                ..new
            }),
            (old, _) => old.clone(),
        };
    }
    let otlp = "otlp_endpoint and otlp_sample_ratio changes need a restart";
    keep(&mut notes, &o.otlp, &mut n.otlp, otlp);
    keep(
        &mut notes,
        &o.reuse_port,
        &mut n.reuse_port,
        "reuse_port changes need a restart",
    );
    if o.instance_id != n.instance_id {
        notes.push(format!(
            "instance_id changes need a restart; still {}",
            o.instance_id
        ));
        n.instance_id = o.instance_id;
    }
    let metrics = "metrics_listen changes need a restart; the endpoint is unchanged";
    keep(
        &mut notes,
        &o.metrics_listen,
        &mut n.metrics_listen,
        metrics,
    );
    let stats = "query_stats_size changes need a restart";
    keep(
        &mut notes,
        &o.query_stats_size,
        &mut n.query_stats_size,
        stats,
    );
    if o.workers != n.workers {
        notes.push(format!(
            "workers: {} -> {} needs a restart",
            o.workers, n.workers
        ));
        n.workers = o.workers;
    }
    let new = Arc::new(new);
    shared.config.store(new.clone());
    notes.extend(shared.pools.reload(&new));
    shared.lookups.clear();
    shared.passwords.clear();
    if notes.is_empty() {
        notes.push("reloaded; no pool changed".to_owned());
    }
    Ok(notes)
}

/// A setting that only a restart changes: the running value stays, with a
/// note saying so.
fn keep<T: PartialEq + Clone>(notes: &mut Vec<String>, old: &T, new: &mut T, note: &str) {
    if old != new {
        notes.push(note.to_owned());
        *new = old.clone();
    }
}

/// Reloads and logs the outcome (SIGHUP).
pub fn reload_and_log(shared: &Shared) {
    match reload(shared) {
        Ok(notes) => {
            for note in notes {
                tracing::info!(%note, "configuration reloaded");
            }
        }
        Err(e) => tracing::error!(error = %e, "reload failed"),
    }
}
