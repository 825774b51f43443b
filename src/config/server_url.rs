//! `postgres://user:pass@host:port/db?sslmode=...` server addresses (or
//! libpq's `key=value` strings). The connection part is parsed by
//! tokio-postgres's own parser; the TLS options, which it does not know,
//! are taken out first (see `net::tls`). An option pgswitch does not
//! support is an error that names it: none is silently ignored.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use crate::net::tls::{ChannelBinding, RootCerts, ServerTls, SslMode, SslOptions};

/// Where a server is, the credentials in its URL, and how to reach it.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerAddr {
    pub host: String,
    pub port: u16,
    /// Connect here instead of resolving `host` (libpq's `hostaddr`); the
    /// certificate is still checked against `host`.
    pub hostaddr: Option<IpAddr>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub dbname: Option<String>,
    pub tls: ServerTls,
}

impl std::fmt::Debug for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for ServerAddr {
    /// `host:port`: safe to log, no credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A URL problem: what is wrong and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError {
    pub problem: String,
    pub fix: String,
}

impl std::fmt::Display for UrlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.problem, self.fix)
    }
}

fn url_error(problem: impl Into<String>, fix: impl Into<String>) -> UrlError {
    UrlError {
        problem: problem.into(),
        fix: fix.into(),
    }
}

const FORMAT: &str = "use postgres://USER:PASSWORD@HOST:PORT/DB";

/// Options handed to tokio-postgres's parser.
const CONNECTION: [&str; 6] = ["user", "password", "dbname", "host", "port", "hostaddr"];
/// Options pgswitch reads itself.
const TLS: [&str; 6] = [
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslsni",
    "channel_binding",
];

impl ServerAddr {
    /// Everything a connection to it is made from, as comparable text, so
    /// that a RELOAD that changes any of it (the dbname, credentials, a TLS
    /// option, or the contents of a file one names) rebuilds what uses it.
    /// Kept in memory only: it holds the password.
    pub fn identity(&self) -> String {
        format!(
            "{}:{} {:?} {:?} {:?} {:?} {:?} {:x}",
            self.host,
            self.port,
            self.hostaddr,
            self.user,
            self.password,
            self.dbname,
            self.tls.options,
            self.tls.digest
        )
    }

    /// Parses a URL or key=value connection string with one TCP host, and
    /// reads the TLS files it names.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let (rest, options) = split_options(url)?;
        let mut tls_options = SslOptions {
            sni: true,
            ..SslOptions::default()
        };
        for (key, value) in &options {
            if CONNECTION.contains(&key.as_str()) {
                continue;
            }
            if !TLS.contains(&key.as_str()) {
                return Err(url_error(
                    format!("option '{key}' is not supported by pgswitch"),
                    format!(
                        "remove it from the URL; pgswitch reads {} and {}",
                        CONNECTION.join(", "),
                        TLS.join(", ")
                    ),
                ));
            }
            tls_option(&mut tls_options, key, value)?;
        }
        let cfg = tokio_postgres::Config::from_str(&rest)
            .map_err(|e| url_error(format!("not a valid postgres:// URL: {e}"), FORMAT))?;
        let host = match cfg.get_hosts() {
            [tokio_postgres::config::Host::Tcp(h)] => h.clone(),
            [] => "localhost".to_owned(),
            [_] => {
                return Err(url_error(
                    "unix-socket hosts are not supported",
                    "use a TCP host",
                ))
            }
            _ => {
                return Err(url_error(
                    "give exactly one host per URL",
                    "list replicas separately",
                ))
            }
        };
        let port = match cfg.get_ports() {
            [] => 5432,
            [p] => *p,
            _ => return Err(url_error("give exactly one port per URL", FORMAT)),
        };
        let hostaddr = match cfg.get_hostaddrs() {
            [] => None,
            [a] => Some(*a),
            _ => return Err(url_error("give exactly one hostaddr per URL", FORMAT)),
        };
        let tls = ServerTls::new(tls_options).map_err(|e| url_error(e.problem, e.fix))?;
        Ok(ServerAddr {
            host,
            port,
            hostaddr,
            user: cfg.get_user().map(str::to_owned),
            password: cfg
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            dbname: cfg.get_dbname().map(str::to_owned),
            tls,
        })
    }
}

fn tls_option(o: &mut SslOptions, key: &str, value: &str) -> Result<(), UrlError> {
    let bad = |allowed: &str| {
        url_error(
            format!("{key}={value} is not a valid value"),
            format!("use {key}={allowed}"),
        )
    };
    match key {
        "sslmode" => {
            o.mode = SslMode::parse(value)
                .ok_or_else(|| bad("disable, allow, prefer, require, verify-ca or verify-full"))?
        }
        "sslrootcert" => {
            o.root = Some(match value {
                "system" => RootCerts::System,
                path => RootCerts::File(PathBuf::from(path)),
            })
        }
        "sslcert" => o.cert = Some(PathBuf::from(value)),
        "sslkey" => o.key = Some(PathBuf::from(value)),
        "sslsni" => {
            o.sni = match value {
                "1" => true,
                "0" => false,
                _ => return Err(bad("1 or 0")),
            }
        }
        "channel_binding" => {
            o.channel_binding = match value {
                "disable" => ChannelBinding::Disable,
                "prefer" => ChannelBinding::Prefer,
                "require" => ChannelBinding::Require,
                _ => return Err(bad("disable, prefer or require")),
            }
        }
        _ => {}
    }
    Ok(())
}

/// Splits the options out of a URL's query or a key=value string: returns
/// the string with only the connection options left, and every option.
fn split_options(s: &str) -> Result<(String, Vec<(String, String)>), UrlError> {
    let s = s.trim();
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        let Some((base, query)) = s.split_once('?') else {
            return Ok((s.to_owned(), Vec::new()));
        };
        let mut kept = Vec::new();
        let mut options = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (percent_decode(k)?, percent_decode(v)?);
            if CONNECTION.contains(&k.as_str()) {
                kept.push(pair);
            }
            options.push((k, v));
        }
        let rest = match kept.is_empty() {
            true => base.to_owned(),
            false => format!("{base}?{}", kept.join("&")),
        };
        return Ok((rest, options));
    }
    let options = key_values(s)?;
    let rest = options
        .iter()
        .filter(|(k, _)| CONNECTION.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect::<Vec<_>>()
        .join(" ");
    Ok((rest, options))
}

fn percent_decode(s: &str) -> Result<String, UrlError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| url_error(format!("bad percent-encoding in '{s}'"), FORMAT))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| url_error(format!("'{s}' is not UTF-8"), FORMAT))
}

/// libpq's `key = value` pairs; values may be single-quoted, with `\`
/// escapes.
fn key_values(s: &str) -> Result<Vec<(String, String)>, UrlError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(url_error(
                format!("'{key}' has no value in the connection string"),
                "use key=value pairs, or a postgres:// URL",
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => {
                        return Err(url_error(
                            format!("the value of '{key}' has no closing quote"),
                            "close the quote",
                        ))
                    }
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests;
