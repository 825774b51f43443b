//! Loads function volatility from the primary's catalog (`pg_proc`) into a
//! [`FunctionPolicy`], so user functions route by what they declare.

use super::FunctionPolicy;

/// Every function's schema, name and `provolatile`. Overloads are merged
/// by `FunctionPolicy::load_catalog` (most volatile wins).
const QUERY: &str = "SELECT n.nspname::text, p.proname::text, p.provolatile::text \
                     FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace";

/// Reads the catalog through `client` and loads it into `policy`; returns
/// how many functions it saw.
pub async fn load(
    client: &tokio_postgres::Client,
    policy: &mut FunctionPolicy,
) -> Result<usize, tokio_postgres::Error> {
    let rows = client.query(QUERY, &[]).await?;
    let entries: Vec<(String, String, char)> = rows
        .iter()
        .map(|r| {
            let code: String = r.get(2);
            (r.get(0), r.get(1), code.chars().next().unwrap_or('v'))
        })
        .collect();
    policy.load_catalog(entries.iter().map(|(s, n, c)| (s.as_str(), n.as_str(), *c)));
    Ok(entries.len())
}
