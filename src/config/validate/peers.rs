//! Several instances as one pooler: `instance_id`, `peers` and
//! `instances`.

use super::Checker;
use crate::config::file::GeneralFile;
use crate::config::Overrides;

/// The instance's id (the flag, else the file, else one derived from the
/// host name, so that the pods of a Deployment differ) and its peers.
pub(super) fn peers(c: &mut Checker, g: &GeneralFile, ov: &Overrides) -> (u8, Vec<String>) {
    let id = match ov.instance_id.or(g.instance_id) {
        Some(id) if id > 127 => {
            c.problem(
                "pgswitch.instance_id",
                format!("{id} is above 127"),
                "use 0-127, different on every instance, or remove it to derive one from the host name",
            );
            0
        }
        Some(id) => id,
        None => derived_id(),
    };
    let peers = match &ov.peers[..] {
        [] => g.peers.clone().unwrap_or_default(),
        flags => flags.to_vec(),
    };
    for (i, p) in peers.iter().enumerate() {
        let port = p.rsplit_once(':').and_then(|(host, port)| {
            (!host.is_empty())
                .then(|| port.parse::<u16>().ok())
                .flatten()
        });
        if port.is_none() {
            c.problem(
                &format!("pgswitch.peers[{i}]"),
                format!("'{p}' is not host:port"),
                "name each peer as host:port, e.g. \"pgswitch-peers.default.svc:6432\" (a headless Service's name reaches every pod)",
            );
        }
    }
    (id, peers.into_iter().filter(|p| !p.is_empty()).collect())
}

/// `instances`: at least 1 when set.
pub(super) fn instances(c: &mut Checker, g: &GeneralFile) -> Option<usize> {
    if g.instances == Some(0) {
        c.problem(
            "pgswitch.instances",
            "must be at least 1",
            "set the number of pgswitch instances that share max_server_connections, or remove it to count the addresses peers resolve to",
        );
    }
    g.instances.filter(|&n| n > 0)
}

/// 0-127 from the host name (a pod's name in Kubernetes).
fn derived_id() -> u8 {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    if !ok {
        return 0;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let h = buf[..end].iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (h % 128) as u8
}
