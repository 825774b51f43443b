//! Routing hints written by the application: a leading comment
//! `/* pgswitch:primary */` or `/* pgswitch:replica */` on a statement, and
//! `SET pgswitch.route = primary|replica|auto` for the session. Unknown
//! values are errors, never silently ignored.

/// A requested route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RouteHint {
    Primary,
    Replica,
    /// Let the router decide (the default).
    #[default]
    Auto,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    #[error("invalid pgswitch route \"{0}\": use primary, replica or auto")]
    UnknownHint(String),
    #[error("invalid pgswitch.min_lsn \"{0}\": use a WAL position such as '0/16B3748', as pg_current_wal_lsn() returns it")]
    BadLsn(String),
    #[error("SET pgswitch.min_lsn must be a simple query of its own, not a prepared statement")]
    MinLsnPrepared,
}

impl RouteHint {
    pub fn parse(value: &str) -> Result<Self, RouterError> {
        match value
            .trim()
            .trim_matches(|c| c == '\'' || c == '"')
            .to_ascii_lowercase()
            .as_str()
        {
            "primary" => Ok(RouteHint::Primary),
            "replica" => Ok(RouteHint::Replica),
            "auto" | "default" => Ok(RouteHint::Auto),
            other => Err(RouterError::UnknownHint(other.to_owned())),
        }
    }
}

/// The hint in a `/* pgswitch:VALUE */` comment at the start of `sql`
/// (after whitespace), if any.
pub fn leading_hint(sql: &str) -> Result<Option<RouteHint>, RouterError> {
    let Some(rest) = sql.trim_start().strip_prefix("/*") else {
        return Ok(None);
    };
    let Some(end) = rest.find("*/") else {
        return Ok(None);
    };
    match rest[..end].trim().strip_prefix("pgswitch:") {
        Some(value) => RouteHint::parse(value).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_hints() {
        assert_eq!(
            leading_hint("/* pgswitch:primary */ SELECT 1"),
            Ok(Some(RouteHint::Primary))
        );
        assert_eq!(
            leading_hint("  /*pgswitch:replica*/SELECT 1"),
            Ok(Some(RouteHint::Replica))
        );
        assert_eq!(leading_hint("/* just a comment */ SELECT 1"), Ok(None));
        assert_eq!(leading_hint("SELECT 1 /* pgswitch:primary */"), Ok(None));
        assert_eq!(
            leading_hint("/* pgswitch:primray */ SELECT 1"),
            Err(RouterError::UnknownHint("primray".into()))
        );
    }

    #[test]
    fn setting_values() {
        assert_eq!(RouteHint::parse("'Replica'"), Ok(RouteHint::Replica));
        assert_eq!(RouteHint::parse("auto"), Ok(RouteHint::Auto));
        assert!(RouteHint::parse("fast").is_err());
    }
}
