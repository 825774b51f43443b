//! Users the config does not list, looked up with `auth_query` (issue 11),
//! against the real cluster, whose `pg_hba.conf` demands scram-sha-256 from
//! every role but `app_md5` (md5): a role created after pgswitch started
//! logs in through it with its own password and runs as itself, which
//! proves the SCRAM pass-through (pgswitch never has the password); wrong
//! passwords and unknown users read alike; a password change takes effect;
//! an md5 verifier serves md5 clients; and a non-superuser `auth_user`
//! works through a SECURITY DEFINER function, as on managed services.

mod common;

use common::*;

/// A config listing only `app`, looking others up as `auth_user`.
fn lookup_config(auth: &str) -> pgswitch::config::Config {
    config_from_toml(&format!(
        "[pgswitch]\nlisten = \"127.0.0.1:0\"\npool_mode = \"transaction\"\n{auth}\n\
         [[databases]]\nname = \"app\"\nprimary = \"{}\"\n\
         [[users]]\nname = \"app\"\npassword = \"app-secret\"\n",
        primary_url()
    ))
}

/// Role DDL and grants on database `app`, one test at a time: two GRANTs on
/// the same database row at once fail with "tuple concurrently updated".
static ROLE_DDL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A fresh role with `password` (SCRAM), allowed into database `app`.
async fn new_role(tag: &str, password: &str) -> String {
    let name = format!("lookup_{tag}_{}", std::process::id());
    let _ddl = ROLE_DDL.lock().await;
    let su = superuser().await;
    su.batch_execute(&format!(
        "DROP ROLE IF EXISTS {name}; \
         SET password_encryption = 'scram-sha-256'; \
         CREATE ROLE {name} LOGIN PASSWORD '{password}'; \
         GRANT CONNECT ON DATABASE app TO {name};"
    ))
    .await
    .unwrap();
    name
}

async fn drop_role(name: &str) {
    let _ddl = ROLE_DDL.lock().await;
    let su = superuser().await;
    // Its sessions (pgswitch's pooled ones) first.
    su.batch_execute(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'"
    ))
    .await
    .unwrap();
    let _ = su
        .batch_execute(&format!("DROP ROLE IF EXISTS {name}"))
        .await;
}

async fn login(
    proxy: &Proxy,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, String> {
    match connect(&proxy.url_as(user, password, "app")).await {
        Ok(c) => Ok(c),
        Err(e) => Err(format!("{} {}", sqlstate(&e), message(&e))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_created_after_start_logs_in_as_itself_without_pgswitch_knowing_its_password() {
    let proxy = Proxy::start(lookup_config("auth_user = \"postgres\"")).await;
    let role = new_role("late", "late-secret").await;
    let c = login(&proxy, &role, "late-secret")
        .await
        .expect("looked-up login");
    // Its server session is its own (scram-sha-256 on the server: the keys
    // its client proved logged pgswitch in).
    assert_eq!(
        first_row(&c, "SELECT current_user, session_user").await,
        [role.clone(), role.clone()]
    );
    // A second client of the same role, and the same again in a new
    // transaction: one pool, reused.
    let d = login(&proxy, &role, "late-secret").await.expect("again");
    assert_eq!(first_row(&d, "SELECT current_user").await, [role.as_str()]);
    // Wrong password and unknown user: the same 28P01.
    let wrong = login(&proxy, &role, "guess")
        .await
        .expect_err("wrong password");
    assert_eq!(
        wrong,
        format!("28P01 password authentication failed for user \"{role}\"")
    );
    let ghost = format!("ghost_{}", std::process::id());
    let unknown = login(&proxy, &ghost, "guess")
        .await
        .expect_err("unknown user");
    assert_eq!(
        unknown,
        format!("28P01 password authentication failed for user \"{ghost}\"")
    );
    // A name longer than Postgres allows (63 bytes) is no role: the same
    // 28P01, not a failed look-up.
    let long = "x".repeat(100);
    let too_long = login(&proxy, &long, "guess").await.expect_err("too long");
    assert_eq!(
        too_long,
        format!("28P01 password authentication failed for user \"{long}\"")
    );
    // A RELOAD keeps the looked-up user's pool (it is not in the file, but
    // its database still looks users up), and its clients go on.
    let notes = pgswitch::reload::reload(&proxy.shared).expect("reload");
    assert!(
        !notes.iter().any(|n| n.contains(&role)),
        "the looked-up pool was touched: {notes:?}"
    );
    assert_eq!(first_row(&c, "SELECT current_user").await, [role.as_str()]);
    // Users the config lists work as before.
    let app = proxy.client().await;
    assert_eq!(first_row(&app, "SELECT current_user").await, ["app"]);
    drop((c, d, app));
    proxy.stop().await;
    drop_role(&role).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_takes_effect_after_one_refused_login() {
    let settings = "auth_user = \"postgres\"\nauth_cache_ttl = \"1h\"";
    let proxy = Proxy::start(lookup_config(settings)).await;
    let role = new_role("alter", "first-secret").await;
    let c = login(&proxy, &role, "first-secret")
        .await
        .expect("first password");
    drop(c);
    superuser()
        .await
        .batch_execute(&format!("ALTER ROLE {role} PASSWORD 'second-secret'"))
        .await
        .unwrap();
    // The kept verifier is the old one: the new password is refused once,
    // and that refusal makes pgswitch read the verifier again.
    let refused = login(&proxy, &role, "second-secret").await;
    assert!(refused.is_err(), "checked against the kept verifier");
    let c = login(&proxy, &role, "second-secret")
        .await
        .expect("the new password, read again");
    assert_eq!(first_row(&c, "SELECT current_user").await, [role.as_str()]);
    assert!(
        login(&proxy, &role, "first-secret").await.is_err(),
        "the old one"
    );
    drop(c);
    proxy.stop().await;
    drop_role(&role).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_md5_verifier_serves_md5_clients() {
    // app_md5 has an md5 verifier and pg_hba.conf asks md5 of it.
    let proxy = Proxy::start(lookup_config("auth_user = \"postgres\"")).await;
    let c = login(&proxy, "app_md5", "md5-secret")
        .await
        .expect("md5 login");
    assert_eq!(first_row(&c, "SELECT current_user").await, ["app_md5"]);
    assert!(login(&proxy, "app_md5", "guess").await.is_err());
    drop(c);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_superuser_auth_user_looks_up_through_a_security_definer_function() {
    let ddl = ROLE_DDL.lock().await;
    let su = superuser().await;
    // As an operator sets it up where there is no superuser (see README).
    su.batch_execute(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgswitch_auth') THEN
             SET LOCAL password_encryption = 'scram-sha-256';
             CREATE ROLE pgswitch_auth LOGIN PASSWORD 'auth-secret';
           END IF;
         END $$;
         GRANT CONNECT ON DATABASE app TO pgswitch_auth;
         CREATE SCHEMA IF NOT EXISTS pgswitch;
         CREATE OR REPLACE FUNCTION pgswitch.user_lookup(i_username text,
             OUT uname text, OUT phash text)
           RETURNS record LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS
           $$ SELECT rolname::text, rolpassword::text FROM pg_authid
              WHERE rolname = i_username AND rolcanlogin $$;
         REVOKE ALL ON FUNCTION pgswitch.user_lookup(text) FROM PUBLIC;
         GRANT USAGE ON SCHEMA pgswitch TO pgswitch_auth;
         GRANT EXECUTE ON FUNCTION pgswitch.user_lookup(text) TO pgswitch_auth;",
    )
    .await
    .unwrap();
    drop(ddl);
    let settings = "auth_user = \"pgswitch_auth\"\n\
        auth_query = \"SELECT uname, phash FROM pgswitch.user_lookup($1)\"";
    let toml = format!(
        "[pgswitch]\nlisten = \"127.0.0.1:0\"\npool_mode = \"transaction\"\n{settings}\n\
         [[databases]]\nname = \"app\"\nprimary = \"{}\"\n\
         [[users]]\nname = \"app\"\npassword = \"app-secret\"\n\
         [[users]]\nname = \"pgswitch_auth\"\npassword = \"auth-secret\"\n",
        primary_url()
    );
    let proxy = Proxy::start(config_from_toml(&toml)).await;
    let role = new_role("definer", "definer-secret").await;
    let c = login(&proxy, &role, "definer-secret")
        .await
        .expect("looked up");
    assert_eq!(first_row(&c, "SELECT current_user").await, [role.as_str()]);
    assert!(login(&proxy, &role, "guess").await.is_err());
    drop(c);
    proxy.stop().await;
    drop_role(&role).await;
}
