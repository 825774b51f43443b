//! `postgres://user:pass@host:port/db` server addresses, parsed by
//! tokio-postgres's own connection-string parser.

use std::str::FromStr;

/// Where a server is and the credentials in its URL.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerAddr {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub dbname: Option<String>,
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

impl ServerAddr {
    /// Parses a URL or key=value connection string with one TCP host.
    pub fn parse(url: &str) -> Result<Self, String> {
        let cfg = tokio_postgres::Config::from_str(url)
            .map_err(|e| format!("not a valid postgres:// URL: {e}"))?;
        let host = match cfg.get_hosts() {
            [tokio_postgres::config::Host::Tcp(h)] => h.clone(),
            [] => "localhost".to_owned(),
            [_] => return Err("unix-socket hosts are not supported; use a TCP host".into()),
            _ => return Err("give exactly one host per URL; list replicas separately".into()),
        };
        let port = match cfg.get_ports() {
            [] => 5432,
            [p] => *p,
            _ => return Err("give exactly one port per URL".into()),
        };
        Ok(ServerAddr {
            host,
            port,
            user: cfg.get_user().map(str::to_owned),
            password: cfg
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            dbname: cfg.get_dbname().map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_url() {
        let a = ServerAddr::parse("postgres://app:s%40cret@127.0.0.1:15432/app").unwrap();
        assert_eq!(a.host, "127.0.0.1");
        assert_eq!(a.port, 15432);
        assert_eq!(a.user.as_deref(), Some("app"));
        assert_eq!(a.password.as_deref(), Some("s@cret"));
        assert_eq!(a.dbname.as_deref(), Some("app"));
        assert_eq!(a.to_string(), "127.0.0.1:15432");
    }

    #[test]
    fn defaults_and_errors() {
        let a = ServerAddr::parse("postgres://db.internal/x").unwrap();
        assert_eq!((a.port, a.user, a.password), (5432, None, None));
        assert!(ServerAddr::parse("mysql://x").is_err());
        assert!(ServerAddr::parse("postgres://a,b/x").is_err());
    }
}
