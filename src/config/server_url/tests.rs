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
    // libpq's default: TLS if the server has it, SNI on.
    assert_eq!(a.tls.options.mode, SslMode::Prefer);
    assert!(a.tls.options.sni);
    assert!(a.tls.config.is_some());
}

#[test]
fn defaults_and_errors() {
    let a = ServerAddr::parse("postgres://db.internal/x").unwrap();
    assert_eq!((a.port, a.user, a.password), (5432, None, None));
    assert!(ServerAddr::parse("mysql://x").is_err());
    assert!(ServerAddr::parse("postgres://a,b/x").is_err());
}

#[test]
fn tls_options_in_urls_and_key_values() {
    let a = ServerAddr::parse(
        "postgres://u:p@db.example.com:5433/app?sslmode=require&sslsni=0&channel_binding=require",
    )
    .unwrap();
    assert_eq!(a.tls.options.mode, SslMode::Require);
    assert!(!a.tls.options.sni);
    assert_eq!(a.tls.options.channel_binding, ChannelBinding::Require);
    assert_eq!((a.host.as_str(), a.port), ("db.example.com", 5433));
    let k = ServerAddr::parse(
        "host=db.example.com port=5433 user=u password='it''s' dbname=app sslmode=disable",
    );
    // A doubled quote is not libpq's escape: the value ends at the second.
    assert!(k.is_err());
    let k = ServerAddr::parse(
        r"host=db.example.com port = 5433 user=u password='it\'s x' dbname=app sslmode=disable hostaddr=127.0.0.1",
    )
    .unwrap();
    assert_eq!(k.password.as_deref(), Some("it's x"));
    assert_eq!(k.tls.options.mode, SslMode::Disable);
    assert!(k.tls.config.is_none());
    assert_eq!(k.hostaddr, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(k.host, "db.example.com");
}

#[test]
fn unsupported_options_and_bad_values_are_named() {
    for (url, named) in [
        ("postgres://u@h/db?application_name=x", "'application_name'"),
        ("postgres://u@h/db?sslcompression=1", "'sslcompression'"),
        (
            "host=h target_session_attrs=read-write",
            "'target_session_attrs'",
        ),
        ("postgres://u@h/db?sslmode=verify", "sslmode=verify"),
        ("postgres://u@h/db?sslsni=yes", "sslsni=yes"),
    ] {
        let e = ServerAddr::parse(url).unwrap_err();
        assert!(e.problem.contains(named), "{url}: {e}");
    }
}

#[test]
fn verification_needs_a_root_and_readable_files() {
    let e = ServerAddr::parse("postgres://u@h/db?sslmode=verify-full").unwrap_err();
    assert!(e.problem.contains("needs sslrootcert"), "{e}");
    assert!(e.fix.contains("sslrootcert=system"), "{e}");
    let e =
        ServerAddr::parse("postgres://u@h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.crt")
            .unwrap_err();
    assert!(e.problem.contains("/nonexistent/ca.crt"), "{e}");
    let e = ServerAddr::parse("postgres://u@h/db?sslcert=/tmp/x.crt").unwrap_err();
    assert!(e.problem.contains("together"), "{e}");
}
