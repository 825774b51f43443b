//! The admin command language: a few keywords, case-insensitive, an
//! optional trailing semicolon.

/// Shown with every error, and by `SHOW HELP`.
pub const HELP: &str = "valid commands: SHOW POOLS | CLIENTS | SERVERS | STATS | QUERIES | REPLICAS | CONFIG | VERSION | HELP | DATABASES | LISTS | STATS_TOTALS | STATS_AVERAGES, SHOW ROUTE <sql>, PAUSE [db], RESUME [db], RELOAD, SHUTDOWN";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// An empty query (psql sends one for a lone `;`).
    Empty,
    Show(Show),
    /// Hold new transactions of a database (or all), and wait until its
    /// server connections are all back in the pool.
    Pause(Option<String>),
    Resume(Option<String>),
    /// Re-read the config file (as on SIGHUP).
    Reload,
    /// Graceful shutdown, as on SIGTERM.
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Show {
    Pools,
    Clients,
    Servers,
    Stats,
    /// Per-fingerprint statistics, heaviest first.
    Queries,
    Replicas,
    Config,
    Version,
    Help,
    /// The route and reason for a statement, without running it.
    Route(String),
    /// PgBouncer's tables, in both consoles (see `pgbouncer`).
    Databases,
    Lists,
    StatsTotals,
    StatsAverages,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("unknown admin command \"{0}\"")]
    Unknown(String),
    #[error("SHOW ROUTE needs a statement, e.g. SHOW ROUTE SELECT 1")]
    NoStatement,
    #[error("database \"{0}\" is not configured")]
    NoDatabase(String),
    #[error("paused, but {0} server connection(s) are still in use after {1:?}; they return as their transactions end (RESUME undoes the pause)")]
    StillBusy(usize, std::time::Duration),
    #[error("{0}")]
    Route(#[from] crate::router::RouterError),
    #[error("{0}")]
    Reload(#[from] crate::reload::ReloadError),
}

impl AdminError {
    pub fn sqlstate(&self) -> &'static str {
        match self {
            AdminError::Unknown(_) | AdminError::NoStatement => "42601",
            AdminError::NoDatabase(_) => "3D000",
            AdminError::StillBusy(..) => "55000",
            AdminError::Route(_) => "22023",
            AdminError::Reload(crate::reload::ReloadError::NoFile) => "55000",
            AdminError::Reload(_) => "F0000",
        }
    }
}

impl Command {
    pub fn parse(text: &str) -> Result<Command, AdminError> {
        let text = text.trim().trim_end_matches(';').trim();
        if text.is_empty() {
            return Ok(Command::Empty);
        }
        let mut words = text.split_whitespace();
        let first = words.next().unwrap_or_default().to_ascii_uppercase();
        let second = words.next().map(str::to_ascii_uppercase);
        let unknown = || AdminError::Unknown(text.chars().take(200).collect());
        let database = || {
            text.split_whitespace()
                .nth(1)
                .map(|d| d.trim_matches('"').to_owned())
        };
        match (first.as_str(), second.as_deref()) {
            ("SHUTDOWN", None) => Ok(Command::Shutdown),
            ("RELOAD", None) => Ok(Command::Reload),
            ("PAUSE", _) if words.next().is_none() => Ok(Command::Pause(database())),
            ("RESUME", _) if words.next().is_none() => Ok(Command::Resume(database())),
            ("SHOW", Some("ROUTE")) => {
                // Everything after the keyword, as written.
                let at = text
                    .to_ascii_uppercase()
                    .find("ROUTE")
                    .map_or(text.len(), |i| i + "ROUTE".len());
                let sql = text[at..].trim();
                if sql.is_empty() {
                    return Err(AdminError::NoStatement);
                }
                Ok(Command::Show(Show::Route(sql.to_owned())))
            }
            ("SHOW", Some(what)) if words.next().is_none() => Ok(Command::Show(match what {
                "POOLS" => Show::Pools,
                "CLIENTS" => Show::Clients,
                "SERVERS" => Show::Servers,
                "STATS" => Show::Stats,
                "QUERIES" => Show::Queries,
                "REPLICAS" => Show::Replicas,
                "CONFIG" => Show::Config,
                "VERSION" => Show::Version,
                "HELP" => Show::Help,
                "DATABASES" => Show::Databases,
                "LISTS" => Show::Lists,
                "STATS_TOTALS" => Show::StatsTotals,
                "STATS_AVERAGES" => Show::StatsAverages,
                _ => return Err(unknown()),
            })),
            _ => Err(unknown()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(
            Command::parse("show pools;"),
            Ok(Command::Show(Show::Pools))
        );
        assert_eq!(
            Command::parse("  SHOW  Replicas "),
            Ok(Command::Show(Show::Replicas))
        );
        assert_eq!(Command::parse(";"), Ok(Command::Empty));
        assert_eq!(Command::parse("shutdown"), Ok(Command::Shutdown));
        assert_eq!(Command::parse("PAUSE"), Ok(Command::Pause(None)));
        assert_eq!(
            Command::parse("pause app;"),
            Ok(Command::Pause(Some("app".into())))
        );
        assert_eq!(
            Command::parse("RESUME \"app\""),
            Ok(Command::Resume(Some("app".into())))
        );
        assert!(matches!(
            Command::parse("PAUSE a b"),
            Err(AdminError::Unknown(_))
        ));
        assert_eq!(
            Command::parse("show route SELECT * FROM t FOR UPDATE;"),
            Ok(Command::Show(Show::Route(
                "SELECT * FROM t FOR UPDATE".into()
            )))
        );
        assert_eq!(Command::parse("SHOW ROUTE"), Err(AdminError::NoStatement));
        assert!(matches!(
            Command::parse("SHOW POOLS extra"),
            Err(AdminError::Unknown(_))
        ));
        assert!(matches!(
            Command::parse("DROP TABLE x"),
            Err(AdminError::Unknown(_))
        ));
        assert!(matches!(
            Command::parse("SHOW"),
            Err(AdminError::Unknown(_))
        ));
    }
}
