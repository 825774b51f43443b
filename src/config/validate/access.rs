//! Who may connect, and how: what a listed user must present
//! (`client_auth`), the certificate offered to clients (`client_tls`) and
//! where users the config does not list are looked up
//! (`auth_user`/`auth_query`).

use super::Checker;
use crate::auth::ScramVerifier;
use crate::config::file::FileConfig;
use crate::config::{AuthMethod, ClientAuth, Database, Overrides};

/// `auth_user`/`auth_query` of each database (its own, else
/// `[pgswitch]`'s, else `--auth-user`). The auth user's password: its
/// `[[users]]` entry's server password, else the primary URL's.
pub(super) fn auth_lookups(
    c: &mut Checker,
    file: &FileConfig,
    ov: &Overrides,
    users: &[crate::config::User],
    databases: &mut [Database],
) {
    let g = &file.pgswitch;
    for (i, db) in databases.iter_mut().enumerate() {
        let own = file.databases.iter().find(|d| d.name == db.name);
        // The database's own, else the flag (flags beat the file), else
        // [pgswitch]'s.
        let user = own
            .and_then(|d| d.auth_user.clone())
            .or_else(|| ov.auth_user.clone())
            .or_else(|| g.auth_user.clone());
        let query = own
            .and_then(|d| d.auth_query.clone())
            .or_else(|| g.auth_query.clone());
        let Some(user) = user.filter(|u| !u.is_empty()) else {
            if query.is_some() {
                c.problem(
                    &format!("databases[{i}].auth_query"),
                    "auth_query is set but no auth_user logs in to run it",
                    "set auth_user (in [pgswitch] or the database, or --auth-user)",
                );
            }
            continue;
        };
        let query = query.unwrap_or_else(|| crate::config::DEFAULT_AUTH_QUERY.to_owned());
        if !query.contains("$1") {
            c.problem(
                &format!("databases[{i}].auth_query"),
                "auth_query does not use $1 (the user name)",
                "use e.g. SELECT uname, phash FROM pgswitch.user_lookup($1)",
            );
        }
        // The URL's password is the auth user's only if the URL names it,
        // or --auth-user says so.
        let url_is_its = db.primary.user.as_deref() == Some(user.as_str())
            || ov.auth_user.as_deref() == Some(user.as_str());
        let password = users
            .iter()
            .find(|u| u.name == user)
            .and_then(|u| u.server_password.clone())
            .or_else(|| url_is_its.then(|| db.primary.password.clone()).flatten());
        db.auth = Some(crate::config::AuthLookup {
            user,
            password,
            query,
        });
    }
}

/// The certificate for clients (read now, so that a broken file is a load
/// error naming it) and whether clients may or must use it.
pub(super) fn client_tls(
    c: &mut Checker,
    g: &crate::config::file::GeneralFile,
    ov: &Overrides,
) -> (
    crate::config::ClientTlsMode,
    Option<std::sync::Arc<crate::net::tls::ClientTls>>,
) {
    use crate::config::ClientTlsMode;
    let cert = ov.tls_cert.clone().or_else(|| g.tls_cert_file.clone());
    let key = ov.tls_key.clone().or_else(|| g.tls_key_file.clone());
    let tls = match (&cert, &key) {
        (Some(cert), Some(key)) => match crate::net::tls::ClientTls::load(cert, key) {
            Ok(t) => Some(std::sync::Arc::new(t)),
            Err(e) => {
                let key = match e.problem.starts_with("tls_key_file") {
                    true => "pgswitch.tls_key_file",
                    false => "pgswitch.tls_cert_file",
                };
                c.problem(key, e.problem, e.fix);
                None
            }
        },
        (None, None) => None,
        (Some(_), None) => {
            c.problem(
                "pgswitch.tls_key_file",
                "tls_cert_file is set but tls_key_file is not",
                "set tls_key_file (--tls-key) to the certificate's private key",
            );
            None
        }
        (None, Some(_)) => {
            c.problem(
                "pgswitch.tls_cert_file",
                "tls_key_file is set but tls_cert_file is not",
                "set tls_cert_file (--tls-cert) to the certificate (PEM)",
            );
            None
        }
    };
    let configured = cert.is_some() || key.is_some();
    let mode = ov.client_tls.or(g.client_tls).unwrap_or(match configured {
        true => ClientTlsMode::Allow,
        false => ClientTlsMode::Disable,
    });
    if mode != ClientTlsMode::Disable && !configured {
        c.problem(
            "pgswitch.client_tls",
            format!("client_tls = \"{mode}\" needs a certificate"),
            "set tls_cert_file and tls_key_file (--tls-cert, --tls-key), or client_tls = \"disable\"",
        );
    }
    (mode, tls)
}

/// A stored verifier or md5 hash rather than a password.
pub(super) fn is_hashed(p: &str) -> bool {
    p.starts_with("SCRAM-SHA-256$") || (p.len() == 35 && p.starts_with("md5"))
}

pub(super) fn client_auth(
    c: &mut Checker,
    key: &str,
    user: &str,
    method: AuthMethod,
    password: Option<&str>,
) -> Option<ClientAuth> {
    let key = format!("{key}.password");
    match (method, password) {
        (AuthMethod::Trust, _) => Some(ClientAuth::Trust),
        (_, None) => {
            c.problem(
                &key,
                format!("user '{user}' uses password auth but has no password"),
                "set password = \"...\" or auth = \"trust\"",
            );
            None
        }
        (AuthMethod::ScramSha256, Some(p)) if p.starts_with("SCRAM-SHA-256$") => {
            match ScramVerifier::parse(p) {
                Some(v) => Some(ClientAuth::Scram(v)),
                None => {
                    c.problem(
                        &key,
                        "malformed SCRAM verifier",
                        "copy rolpassword from pg_authid as is, or give the plain password",
                    );
                    None
                }
            }
        }
        (AuthMethod::ScramSha256, Some(p)) if is_hashed(p) => {
            c.problem(
                &key,
                "an md5 hash cannot serve SCRAM-SHA-256 auth",
                "give the plain password or a SCRAM verifier, or set auth = \"md5\"",
            );
            None
        }
        (AuthMethod::ScramSha256, Some(p)) => {
            Some(ClientAuth::Scram(ScramVerifier::from_password(p)))
        }
        (AuthMethod::Md5, Some(p)) if p.starts_with("SCRAM-SHA-256$") => {
            c.problem(
                &key,
                "a SCRAM verifier cannot serve md5 auth",
                "give the plain password or the md5 hash, or set auth = \"scram-sha-256\"",
            );
            None
        }
        (AuthMethod::Md5, Some(p)) if is_hashed(p) => Some(ClientAuth::Md5 {
            hash: p[3..].to_owned(),
        }),
        (AuthMethod::Md5, Some(p)) => {
            let full = postgres_protocol::password::md5(p.as_bytes(), user);
            Some(ClientAuth::Md5 {
                hash: full[3..].to_owned(),
            })
        }
    }
}
