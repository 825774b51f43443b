//! OTLP trace export: `otlp_endpoint` and `otlp_sample_ratio`.

use super::Checker;
use crate::config::file::GeneralFile;
use crate::config::Overrides;

/// `otlp_endpoint` (the flag beats the file) and `otlp_sample_ratio`.
pub(super) fn otlp(
    c: &mut Checker,
    g: &GeneralFile,
    ov: &Overrides,
) -> Option<crate::config::Otlp> {
    let ratio = g.otlp_sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&ratio) {
        c.problem(
            "pgswitch.otlp_sample_ratio",
            format!("{ratio} is outside 0.0..=1.0"),
            "use a share of transactions, e.g. 0.1 for one in ten (1.0 traces all)",
        );
    }
    let endpoint = ov
        .otlp_endpoint
        .clone()
        .or_else(|| g.otlp_endpoint.clone())
        .filter(|e| !e.is_empty())?;
    let ok = endpoint
        .strip_prefix("http://")
        .is_some_and(|rest| !rest.is_empty() && endpoint.parse::<hyper::Uri>().is_ok());
    if !ok {
        c.problem(
            "pgswitch.otlp_endpoint",
            format!("'{endpoint}' is not an http:// URL"),
            "use the OTLP/HTTP address of a collector, e.g. http://127.0.0.1:4318 (a local agent or sidecar; https is not supported)",
        );
    }
    Some(crate::config::Otlp {
        endpoint,
        sample_ratio: ratio.clamp(0.0, 1.0),
    })
}
