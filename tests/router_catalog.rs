//! Function volatility comes from the real primary's catalog: a user
//! function declared STABLE routes to a replica, a VOLATILE one (or one that
//! really writes) to the primary, and the router agrees with the server
//! about which one a read-only replica would reject.

mod common;

use common::*;
use pgswitch::router::{catalog, route, FunctionPolicy, Route};

#[tokio::test]
async fn user_functions_route_by_declared_volatility() {
    let su = superuser().await;
    let schema = format!("rt_{}", std::process::id());
    su.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
         CREATE TABLE {schema}.audit (v int);
         CREATE FUNCTION {schema}.lookup(x int) RETURNS int STABLE LANGUAGE sql AS 'SELECT x + 1';
         CREATE FUNCTION {schema}.record(x int) RETURNS int VOLATILE LANGUAGE sql
           AS 'INSERT INTO {schema}.audit VALUES (x) RETURNING v';
         GRANT USAGE ON SCHEMA {schema} TO app; GRANT ALL ON {schema}.audit TO app;"
    ))
    .await
    .unwrap();
    let mut policy = FunctionPolicy::new([]);
    let n = catalog::load(&su, &mut policy).await.unwrap();
    assert!(n > 1000, "pg_proc has thousands of built-ins, got {n}");
    let stable = format!("SELECT {schema}.lookup(1)");
    let volatile = format!("SELECT {schema}.record(1)");
    assert_eq!(route(&stable, &policy).unwrap().route, Route::Replica);
    assert_eq!(route(&volatile, &policy).unwrap().route, Route::Primary);
    assert_eq!(
        route("SELECT lower('X'), md5('y')", &policy).unwrap().route,
        Route::Replica
    );
    // The server agrees: a replica runs the stable one and refuses the
    // writing one with 25006 (read_only_sql_transaction).
    let replica = connect(&replica_urls()[0]).await.unwrap();
    let ok = eventually(std::time::Duration::from_secs(10), || async {
        replica.query_one(&stable, &[]).await.is_ok()
    })
    .await;
    assert!(ok, "the stable function never reached the replica");
    let e = replica.query_one(&volatile, &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "25006");
    su.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}
