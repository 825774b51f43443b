//! PgBouncer's ini (`[databases]`, `[users]`, `[pgbouncer]`, `[peers]`) and
//! `auth_file` (userlist.txt) to pgswitch's TOML.

use std::fmt::Write as _;

/// The TOML text, and how many settings had no equivalent.
pub struct Imported {
    pub toml: String,
    pub unmatched: usize,
}

/// One `[databases]` entry: `name = host=... port=... dbname=... ...`.
struct DatabaseEntry {
    name: String,
    params: Vec<(String, String)>,
}

/// Translates `ini` (and the userlist's text, if given).
pub fn import(ini: &str, userlist: Option<&str>) -> Result<Imported, String> {
    let parsed = ini::Ini::load_from_str_opt(
        ini,
        ini::ParseOption {
            enabled_quote: false,
            enabled_escape: false,
            ..Default::default()
        },
    )
    .map_err(|e| format!("not an ini file: {e}"))?;
    let mut general = Vec::new();
    let mut notes = Vec::new();
    let mut databases = Vec::new();
    let mut peers = Vec::new();
    for (section, props) in parsed.iter() {
        let section = section.unwrap_or("").to_ascii_lowercase();
        for (key, value) in props.iter() {
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim().to_owned());
            match section.as_str() {
                "pgbouncer" => setting(&key, &value, &mut general, &mut notes),
                "databases" => databases.push(DatabaseEntry {
                    name: key,
                    params: connstring(&value),
                }),
                "peers" => {
                    let p = connstring(&value);
                    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                    let host = get("host").unwrap_or_else(|| "127.0.0.1".into());
                    let port = get("port").unwrap_or_else(|| "6432".into());
                    peers.push(format!("{host}:{port}"));
                }
                "users" => notes.push(format!(
                    "[users] {key} = {value}: per-user pool settings; set pool_size on the [[users]] entry"
                )),
                other => notes.push(format!("[{other}] {key}: unknown section")),
            }
        }
    }
    if !peers.is_empty() {
        general.push(("peers".into(), toml_list(&peers)));
    }
    let host = general_value(&general, "__listen_host");
    let port = general_value(&general, "__listen_port");
    if host.is_some() || port.is_some() {
        let listen = format!(
            "{}:{}",
            host.as_deref().unwrap_or("127.0.0.1"),
            port.as_deref().unwrap_or("6432")
        );
        general.insert(0, ("listen".into(), toml_str(&listen)));
    }
    let auth_type = general_value(&general, "__auth_type");
    let server_tls = general_value(&general, "__server_sslmode");
    let server_ca = general_value(&general, "__server_ca");
    general.retain(|(k, _)| !k.starts_with("__"));

    let mut out = String::new();
    out.push_str("# pgswitch.toml imported from a PgBouncer configuration by\n");
    out.push_str("# `pgswitch import-pgbouncer`. Check it with `pgswitch check-config FILE`.\n");
    if !notes.is_empty() {
        out.push_str("#\n# Settings without an equivalent (or that need a look):\n");
        for n in &notes {
            let _ = writeln!(out, "#   {n}");
        }
    }
    out.push_str("\n[pgswitch]\n");
    for (k, v) in &general {
        let _ = writeln!(out, "{k} = {v}");
    }
    let mut unmatched = notes.len();
    for db in &databases {
        out.push('\n');
        if db.name == "*" {
            out.push_str(
                "# \"*\" (any database, on a fallback server) has no equivalent: list each\n",
            );
            out.push_str("# database clients use in a [[databases]] entry of its own.\n");
            unmatched += 1;
            continue;
        }
        let (url, extra) = database_url(&db.params, server_tls.as_deref(), server_ca.as_deref());
        out.push_str("[[databases]]\n");
        let _ = writeln!(out, "name = {}", toml_str(&db.name));
        let _ = writeln!(out, "primary = {}", toml_str(&url));
        for (k, v) in extra {
            match k.as_str() {
                "pool_size" => {
                    let _ = writeln!(out, "pool_size = {v}");
                }
                "pool_mode" => {
                    let _ = writeln!(out, "pool_mode = {}", toml_str(&v));
                }
                "max_db_connections" => {
                    let _ = writeln!(out, "max_server_connections = {v}");
                }
                "auth_user" => {
                    let _ = writeln!(out, "auth_user = {}", toml_str(&v));
                }
                other => {
                    unmatched += 1;
                    let _ = writeln!(out, "# {other}={v}: no equivalent per database");
                }
            }
        }
    }
    if let Some(list) = userlist {
        for (name, secret) in users(list) {
            out.push_str("\n[[users]]\n");
            let _ = writeln!(out, "name = {}", toml_str(&name));
            let _ = writeln!(out, "password = {}", toml_str(&secret));
            // As PgBouncer: md5 takes a SCRAM secret as SCRAM.
            let scram = secret.starts_with("SCRAM-SHA-256$");
            match auth_type.as_deref() {
                Some("md5") if !scram => out.push_str("auth = \"md5\"\n"),
                Some("trust") => out.push_str("auth = \"trust\"\n"),
                _ => {}
            }
            if secret.starts_with("SCRAM-SHA-256$") || secret.starts_with("md5") {
                let _ = writeln!(
                    out,
                    "# The userlist holds a verifier: clients log in with it, but pgswitch needs\n\
                     # the password itself (server_password) to log in to the server as {name},\n\
                     # or look the user up on the server with auth_user instead."
                );
            }
        }
    }
    Ok(Imported {
        toml: out,
        unmatched,
    })
}

fn general_value(general: &[(String, String)], key: &str) -> Option<String> {
    general
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// One `[pgbouncer]` setting: a pgswitch key, or a note.
fn setting(key: &str, value: &str, out: &mut Vec<(String, String)>, notes: &mut Vec<String>) {
    let mut put = |k: &str, v: String| out.push((k.to_owned(), v));
    let seconds = |v: &str| -> Option<String> {
        let n: f64 = v.parse().ok()?;
        Some(toml_str(&format!("{}ms", (n * 1000.0).round() as u64)))
    };
    match key {
        "listen_addr" => {
            let host = if value == "*" { "0.0.0.0" } else { value.split(',').next().unwrap_or(value).trim() };
            put("__listen_host", host.to_owned());
        }
        "listen_port" => put("__listen_port", value.to_owned()),
        "pool_mode" => put("pool_mode", toml_str(value)),
        "default_pool_size" => put("pool_size", value.to_owned()),
        "min_pool_size" => put("min_idle", value.to_owned()),
        "max_client_conn" => put("max_client_conn", value.to_owned()),
        // Shared by every instance (divided by `instances`); one PgBouncer
        // is one instance.
        "max_db_connections" => put("max_server_connections", value.to_owned()),
        "max_prepared_statements" => put("max_prepared_statements", value.to_owned()),
        "server_idle_timeout" | "server_lifetime" | "query_wait_timeout" | "client_idle_timeout"
        | "idle_transaction_timeout" => match seconds(value) {
            Some(d) => put(key, d),
            None => notes.push(format!("{key} = {value}: not a number of seconds")),
        },
        "server_connect_timeout" => match seconds(value) {
            Some(d) => put("connect_timeout", d),
            None => notes.push(format!("{key} = {value}: not a number of seconds")),
        },
        "admin_users" => put("admin_users", toml_list(&split_list(value))),
        "auth_user" => put("auth_user", toml_str(value)),
        "auth_query" => put("auth_query", toml_str(value)),
        "client_tls_cert_file" => put("tls_cert_file", toml_str(value)),
        "client_tls_key_file" => put("tls_key_file", toml_str(value)),
        "client_tls_sslmode" => {
            let mode = match value {
                "disable" => "disable",
                "allow" | "prefer" => "allow",
                _ => "require",
            };
            if value.starts_with("verify") {
                notes.push(format!(
                    "client_tls_sslmode = {value}: pgswitch asks clients for no certificate; \"require\" set"
                ));
            }
            put("client_tls", toml_str(mode));
        }
        "server_tls_sslmode" => put("__server_sslmode", value.to_owned()),
        "server_tls_ca_file" => put("__server_ca", value.to_owned()),
        "so_reuseport" => put("reuse_port", (value == "1").to_string()),
        "peer_id" => put("instance_id", value.to_owned()),
        "shutdown_wait_timeout" | "server_reset_query" | "server_reset_query_always" => notes.push(format!(
            "{key} = {value}: pgswitch resets a server connection itself (DISCARD ALL when a client leaves state on it, shutdown_timeout for the drain)"
        )),
        "auth_type" => {
            if !matches!(value, "scram-sha-256" | "md5" | "plain" | "trust") {
                notes.push(format!(
                    "auth_type = {value}: pgswitch knows scram-sha-256, md5 and trust (set per user)"
                ));
            }
            put("__auth_type", value.to_owned());
        }
        // Read as the userlist (`auth_file`); pgswitch needs no file of its own.
        "auth_file" => {}
        other => notes.push(format!("{other} = {value}")),
    }
}

/// `host=... port=... dbname=...`: libpq's key=value form (values may be
/// quoted with single quotes).
fn connstring(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_ascii_lowercase();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('\'') {
            let end = quoted.find('\'').unwrap_or(quoted.len());
            value = quoted[..end].to_owned();
            rest = quoted.get(end + 1..).unwrap_or("").trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            value = rest[..end].to_owned();
            rest = rest[end..].trim_start();
        }
        out.push((key, value));
    }
    out
}

/// The primary's URL from a `[databases]` entry, and the entry's settings
/// that are not part of it.
fn database_url(
    params: &[(String, String)],
    sslmode: Option<&str>,
    ca: Option<&str>,
) -> (String, Vec<(String, String)>) {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let host = get("host").unwrap_or("127.0.0.1");
    let port = get("port").unwrap_or("5432");
    let dbname = get("dbname").unwrap_or("postgres");
    let auth = match (get("user"), get("password")) {
        (Some(u), Some(p)) => format!("{}:{}@", encode(u), encode(p)),
        (Some(u), None) => format!("{}@", encode(u)),
        _ => String::new(),
    };
    let mut query = Vec::new();
    if let Some(mode) = sslmode {
        query.push(format!("sslmode={mode}"));
    }
    if let Some(ca) = ca {
        query.push(format!("sslrootcert={}", encode(ca)));
    }
    let query = match query.is_empty() {
        true => String::new(),
        false => format!("?{}", query.join("&")),
    };
    let url = format!("postgres://{auth}{host}:{port}/{}{query}", encode(dbname));
    let extra = params
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "host" | "port" | "dbname" | "user" | "password"))
        .cloned()
        .collect();
    (url, extra)
}

/// Percent-encodes what a URL part may not hold as it is.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `"user" "secret"` lines of an auth_file.
fn users(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
                return None;
            }
            let mut fields = Vec::new();
            let mut rest = line;
            while let Some(start) = rest.find('"') {
                let after = &rest[start + 1..];
                // "" inside a field is a literal quote.
                let mut value = String::new();
                let mut chars = after.char_indices().peekable();
                let mut end = after.len();
                while let Some((i, c)) = chars.next() {
                    if c == '"' {
                        if chars.peek().map(|&(_, c)| c) == Some('"') {
                            value.push('"');
                            chars.next();
                            continue;
                        }
                        end = i + 1;
                        break;
                    }
                    value.push(c);
                }
                fields.push(value);
                rest = &after[end.min(after.len())..];
            }
            match fields.as_slice() {
                [name, secret, ..] => Some((name.clone(), secret.clone())),
                _ => None,
            }
        })
        .collect()
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn toml_list(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|i| toml_str(i)).collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests;
