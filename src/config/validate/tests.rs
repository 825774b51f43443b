use super::*;
use crate::config::{Config, Overrides};

fn load_str(toml: &str, ov: &Overrides) -> Result<Config, Problems> {
    let file: FileConfig = toml::from_str(toml)
        .map_err(|e| Problems::one(Problem::new("t", "-", e.to_string(), "")))?;
    build(file, ov, Some(Path::new("t.toml")))
}

#[test]
fn primary_url_alone_is_a_full_config() {
    let ov = Overrides {
        primary: Some("postgres://app:pw@127.0.0.1:15432/app".into()),
        ..Default::default()
    };
    let c = Config::load(None, &ov).unwrap();
    assert_eq!(c.databases[0].name, "app");
    let u = c.user("app").unwrap();
    assert!(matches!(u.auth, ClientAuth::Scram(_)));
    assert_eq!(u.server_password.as_deref(), Some("pw"));
    assert_eq!(c.general.pool_mode, PoolMode::Session);
    assert_eq!(c.general.listen.port(), 6432);
    assert_eq!(
        c.general.routing.max_replica_lag,
        Some(std::time::Duration::from_secs(1)),
        "a replica a second behind is out of rotation by default"
    );
    let ov = Overrides {
        max_replica_lag: Some(std::time::Duration::from_millis(250)),
        ..ov
    };
    let c = Config::load(None, &ov).unwrap();
    assert_eq!(
        c.general.routing.max_replica_lag,
        Some(std::time::Duration::from_millis(250))
    );
}

#[test]
fn passwordless_url_needs_loopback() {
    let ov = Overrides {
        primary: Some("postgres://app@127.0.0.1/app".into()),
        ..Default::default()
    };
    assert!(matches!(
        Config::load(None, &ov).unwrap().user("app").unwrap().auth,
        ClientAuth::Trust
    ));
    let ov = Overrides {
        listen: Some("0.0.0.0:6432".into()),
        ..ov
    };
    let err = Config::load(None, &ov).unwrap_err();
    assert!(err.to_string().contains("not loopback"), "{err}");
}

#[test]
fn every_problem_is_listed_with_key() {
    let err = load_str(
        r#"
        [pgswitch]
        listen = "nope"
        pool_size = 0
        [[databases]]
        name = "a"
        primary = "mysql://x"
        [[users]]
        name = "u"
        auth = "md5"
        "#,
        &Overrides::default(),
    )
    .unwrap_err();
    let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"pgswitch.listen"), "{keys:?}");
    assert!(keys.contains(&"pgswitch.pool_size"), "{keys:?}");
    assert!(keys.contains(&"databases[0].primary"), "{keys:?}");
    assert!(keys.contains(&"users[0].password"), "{keys:?}");
    assert!(err
        .0
        .iter()
        .all(|p| p.file == "t.toml" && !p.fix.is_empty()));
}

#[test]
fn unknown_keys_are_errors() {
    let err = FileConfig::read(Path::new("/nonexistent/pgswitch.toml")).unwrap_err();
    assert!(err.to_string().contains("cannot read"));
    let dir = std::env::temp_dir().join(format!("pgswitch-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[pgswitch]\npool_sise = 3\n").unwrap();
    let err = FileConfig::read(&path).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("pool_sise") && text.contains("line 2"),
        "{text}"
    );
}

#[test]
fn flags_beat_file() {
    let c = load_str(
        "[pgswitch]\npool_size = 5\npool_mode = \"session\"\n[[databases]]\nname = \"d\"\nprimary = \"postgres://u:p@h/d\"\n",
        &Overrides { pool_size: Some(7), pool_mode: Some(PoolMode::Transaction), ..Default::default() },
    )
    .unwrap();
    assert_eq!(
        (c.general.pool_size, c.general.pool_mode),
        (7, PoolMode::Transaction)
    );
}

#[test]
fn user_auth_forms() {
    let c = load_str(
        r#"
        [[databases]]
        name = "d"
        primary = "postgres://h/d"
        [[users]]
        name = "plain_md5"
        password = "pw"
        auth = "md5"
        [[users]]
        name = "hashed_md5"
        password = "md5a3556571e93b0d20722ba62be61e8c2d"
        auth = "md5"
        [[users]]
        name = "verifier"
        password = "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        server_password = "pw"
        "#,
        &Overrides::default(),
    )
    .unwrap();
    assert!(
        matches!(&c.user("plain_md5").unwrap().auth, ClientAuth::Md5 { hash } if hash.len() == 32)
    );
    assert!(
        matches!(&c.user("hashed_md5").unwrap().auth, ClientAuth::Md5 { hash } if hash == "a3556571e93b0d20722ba62be61e8c2d")
    );
    assert_eq!(
        c.user("verifier").unwrap().server_password.as_deref(),
        Some("pw")
    );
    assert_eq!(c.user("hashed_md5").unwrap().server_password, None);
}

#[test]
fn example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/pgswitch.example.toml");
    let c = Config::load(Some(&path), &Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(!c.databases.is_empty());
}

#[test]
fn routing_keys_and_weighted_replicas() {
    let c = load_str(
        r#"
        [pgswitch]
        consistency = "primary_only"
        transaction_routing = "first_statement"
        primary_reads = "always"
        load_balancing = "round_robin"
        max_replica_lag = "0s"
        read_your_writes_timeout = "200ms"
        read_only_functions = ["Report_Total", "app.daily"]
        [[databases]]
        name = "app"
        primary = "postgres://a@127.0.0.1:15432/app"
        replicas = ["postgres://a@127.0.0.1:15433/app", { url = "postgres://a@127.0.0.1:15434/app", weight = 3 }]
        "#,
        &Overrides::default(),
    )
    .unwrap();
    let r = &c.general.routing;
    assert!(r.enabled, "routing is on by default");
    assert_eq!(r.consistency, Consistency::PrimaryOnly);
    assert_eq!(r.transaction_routing, TransactionRouting::FirstStatement);
    assert_eq!(r.primary_reads, PrimaryReads::Always);
    assert_eq!(r.load_balancing, LoadBalancing::RoundRobin);
    assert_eq!(r.max_replica_lag, None, "0s turns the time limit off");
    assert_eq!(r.read_your_writes_timeout, Duration::from_millis(200));
    assert_eq!(r.read_only_functions, ["report_total", "app.daily"]);
    let weights: Vec<u32> = c.databases[0].replicas.iter().map(|r| r.weight).collect();
    assert_eq!(weights, [1, 3]);
    assert_eq!(c.databases[0].replicas[1].addr.port, 15434);
}

#[test]
fn bad_routing_values_name_the_key() {
    let err = load_str(
        r#"
        [pgswitch]
        read_only_functions = ["f()", "a.b.c"]
        [[databases]]
        name = "app"
        primary = "postgres://a@127.0.0.1:15432/app"
        replicas = [{ url = "postgres://a@127.0.0.1:15433/app", weight = 0 }]
        "#,
        &Overrides::default(),
    )
    .unwrap_err();
    let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "pgswitch.read_only_functions[0]",
            "pgswitch.read_only_functions[1]",
            "databases[0].replicas[0].weight"
        ],
        "{err}"
    );
    let err = load_str(
        "[pgswitch]\nprimary_reads = \"sometimes\"\n",
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("sometimes"), "{err}");
}

#[test]
fn admins_default_to_the_primary_url_user() {
    let ov = Overrides {
        primary: Some("postgres://app:pw@127.0.0.1:15432/app".into()),
        ..Default::default()
    };
    let c = Config::load(None, &ov).unwrap();
    assert_eq!(c.general.admin_users, ["app"]);
    let err = load_str("[pgswitch]\nadmin_users = [\"ghost\"]\n", &ov).unwrap_err();
    assert_eq!(err.0[0].key, "pgswitch.admin_users[0]", "{err}");
}

#[test]
fn the_serverless_front_is_off_by_default_and_plain_only_on_loopback() {
    let ov = Overrides {
        primary: Some("postgres://app:pw@127.0.0.1:15432/app".into()),
        ..Default::default()
    };
    assert_eq!(Config::load(None, &ov).unwrap().general.http, None);
    let on = Overrides {
        http_listen: Some("127.0.0.1:8432".into()),
        ..ov.clone()
    };
    let http = Config::load(None, &on).unwrap().general.http.unwrap();
    assert_eq!(http.listen.port(), 8432);
    assert_eq!(http.max_request_bytes, 10 << 20);
    assert_eq!(http.cors_origin, "*");
    // Beyond loopback without TLS, passwords would cross in clear.
    let err = load_str("[pgswitch]\nhttp_listen = \"0.0.0.0:8432\"\n", &ov).unwrap_err();
    assert_eq!(err.0[0].key, "pgswitch.http_listen", "{err}");
    assert!(err.0[0].fix.contains("http_allow_plain"), "{err}");
    let c = load_str(
        "[pgswitch]\nhttp_listen = \"0.0.0.0:8432\"\nhttp_allow_plain = true\n",
        &ov,
    )
    .unwrap();
    assert!(c.general.http.unwrap().allow_plain);
    let err = load_str(
        "[pgswitch]\nhttp_listen = \"nowhere\"\nhttp_max_request_bytes = 0\nhttp_read_timeout = \"0s\"\n",
        &ov,
    )
    .unwrap_err();
    let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["pgswitch.http_listen"], "{err}");
    let err = load_str(
        "[pgswitch]\nhttp_listen = \"127.0.0.1:1\"\nhttp_max_request_bytes = 0\nhttp_read_timeout = \"0s\"\n",
        &ov,
    )
    .unwrap_err();
    let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "pgswitch.http_max_request_bytes",
            "pgswitch.http_read_timeout"
        ],
        "{err}"
    );
}

#[test]
fn instance_ids_and_peers() {
    let ov = Overrides {
        primary: Some("postgres://app:pw@127.0.0.1:15432/app".into()),
        ..Default::default()
    };
    let c = load_str(
        "[pgswitch]\ninstance_id = 7\npeers = [\"pgswitch-peers.default.svc:6432\", \"10.0.0.2:6432\"]\n",
        &ov,
    )
    .unwrap();
    assert_eq!(c.general.instance_id, 7);
    assert_eq!(c.general.peers.len(), 2);
    assert_eq!(c.general.instances, None, "counted from the peers");
    let c = load_str(
        "[pgswitch]\ninstances = 3\nmax_server_connections = 90\n[[databases]]\nname = \"x\"\nprimary = \"postgres://u@h/x\"\nmax_server_connections = 30\n",
        &ov,
    )
    .unwrap();
    assert_eq!(c.general.instances, Some(3));
    let limits: Vec<usize> = c
        .databases
        .iter()
        .map(|d| c.max_server_connections(d))
        .collect();
    assert!(limits.contains(&30) && limits.contains(&90), "{limits:?}");
    // Derived from the host name when not set: always within 0-127.
    assert!(Config::load(None, &ov).unwrap().general.instance_id <= 127);
    let err = load_str(
        "[pgswitch]\ninstance_id = 200\npeers = [\"no-port\", \":6432\"]\ninstances = 0\n",
        &ov,
    )
    .unwrap_err();
    let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "pgswitch.instance_id",
            "pgswitch.peers[0]",
            "pgswitch.peers[1]",
            "pgswitch.instances"
        ],
        "{err}"
    );
    // Flags beat the file.
    let flags = Overrides {
        peers: vec!["a:1".into()],
        instance_id: Some(3),
        ..ov
    };
    let c = load_str("[pgswitch]\ninstance_id = 7\npeers = [\"b:2\"]\n", &flags).unwrap();
    assert_eq!(
        (c.general.instance_id, c.general.peers.clone()),
        (3, vec!["a:1".to_owned()])
    );
}

#[test]
fn otlp_endpoint_and_ratio() {
    let ov = Overrides {
        primary: Some("postgres://app:pw@127.0.0.1:15432/app".into()),
        ..Default::default()
    };
    let c = load_str(
        "[pgswitch]\notlp_endpoint = \"http://otel:4318\"\notlp_sample_ratio = 0.25\n",
        &ov,
    )
    .unwrap();
    let o = c.general.otlp.expect("on");
    assert_eq!(
        (o.endpoint.as_str(), o.sample_ratio),
        ("http://otel:4318", 0.25)
    );
    assert!(load_str("[pgswitch]\n", &ov)
        .unwrap()
        .general
        .otlp
        .is_none());
    let err = load_str(
        "[pgswitch]\notlp_endpoint = \"https://otel:4318\"\notlp_sample_ratio = 2.0\n",
        &ov,
    )
    .unwrap_err();
    let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        ["pgswitch.otlp_sample_ratio", "pgswitch.otlp_endpoint"],
        "{err}"
    );
    // The flag beats the file.
    let flags = Overrides {
        otlp_endpoint: Some("http://flag:4318".into()),
        ..ov
    };
    let c = load_str("[pgswitch]\notlp_endpoint = \"http://file:4318\"\n", &flags).unwrap();
    assert_eq!(c.general.otlp.unwrap().endpoint, "http://flag:4318");
}
