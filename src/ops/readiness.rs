//! Readiness for load balancers and Kubernetes: not while draining, and
//! only while every configured primary accepts TCP connections.

use std::time::Duration;

use crate::shared::Shared;

/// How long a primary gets to accept the readiness probe's connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// `Ok` when ready; otherwise why not, one reason per line.
pub async fn check(shared: &Shared) -> Result<(), String> {
    if shared.stopping() != crate::shared::Stopping::No {
        return Err("draining: pgswitch is shutting down".into());
    }
    let mut problems = Vec::new();
    let config = shared.config.load_full();
    for db in &config.databases {
        let p = &db.primary;
        let connect = async {
            match p.hostaddr {
                Some(ip) => tokio::net::TcpStream::connect((ip, p.port)).await,
                None => tokio::net::TcpStream::connect((p.host.as_str(), p.port)).await,
            }
        };
        match tokio::time::timeout(PROBE_TIMEOUT, connect).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => problems.push(format!(
                "database {}: primary {} unreachable: {e}",
                db.name, db.primary
            )),
            Err(_) => problems.push(format!(
                "database {}: primary {} did not accept a connection within {PROBE_TIMEOUT:?}",
                db.name, db.primary
            )),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}
