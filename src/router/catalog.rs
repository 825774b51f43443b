//! Loads what routing needs from the primary's catalog into a
//! [`FunctionPolicy`]: every function's volatility (`pg_proc`), so user
//! functions route by what they declare, and the views whose definition
//! may write, so that a `SELECT` from one goes to the primary the first
//! time rather than being refused by a replica (25006) and run again.

use std::collections::HashSet;

use super::{classify, FunctionPolicy, Route};

/// Every function's schema, name and `provolatile`. Overloads are merged
/// by `FunctionPolicy::load_catalog` (most volatile wins).
const FUNCTIONS: &str = "SELECT n.nspname::text, p.proname::text, p.provolatile::text \
                         FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace";

/// The views outside the system schemas (whose views only read), with
/// their definitions. Temporary views belong to one session and are left
/// to it.
const VIEWS: &str = "SELECT n.nspname::text, c.relname::text, pg_catalog.pg_get_viewdef(c.oid)::text \
                     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                     WHERE c.relkind = 'v' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                     AND n.nspname !~ '^pg_(toast|temp_)'";

/// What a view's rewrite rule depends on, from `pg_depend`: the VOLATILE
/// functions it calls (`kind` 'f') and the other views it reads (`kind`
/// 'v'). Built-in functions are pinned and never recorded there; the
/// definition's text covers those.
const VIEW_DEPENDENCIES: &str = "SELECT DISTINCT vn.nspname::text, v.relname::text, \
       CASE WHEN d.refclassid = 'pg_catalog.pg_proc'::regclass THEN 'f' ELSE 'v' END, \
       coalesce(pn.nspname, un.nspname)::text, coalesce(p.proname, u.relname)::text \
     FROM pg_catalog.pg_rewrite r \
     JOIN pg_catalog.pg_class v ON v.oid = r.ev_class AND v.relkind = 'v' \
     JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace \
     JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid \
     LEFT JOIN pg_catalog.pg_proc p ON d.refclassid = 'pg_catalog.pg_proc'::regclass \
       AND p.oid = d.refobjid AND p.provolatile = 'v' \
     LEFT JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
     LEFT JOIN pg_catalog.pg_class u ON d.refclassid = 'pg_catalog.pg_class'::regclass \
       AND u.oid = d.refobjid AND u.relkind = 'v' AND u.oid <> v.oid \
     LEFT JOIN pg_catalog.pg_namespace un ON un.oid = u.relnamespace \
     WHERE p.oid IS NOT NULL OR u.oid IS NOT NULL";

/// A view: (schema, name).
type View = (String, String);

/// Reads the catalog through `client` and loads it into `policy`; returns
/// how many functions it saw.
pub async fn load(
    client: &tokio_postgres::Client,
    policy: &mut FunctionPolicy,
) -> Result<usize, tokio_postgres::Error> {
    let rows = client.query(FUNCTIONS, &[]).await?;
    let entries: Vec<(String, String, char)> = rows
        .iter()
        .map(|r| {
            let code: String = r.get(2);
            (r.get(0), r.get(1), code.chars().next().unwrap_or('v'))
        })
        .collect();
    policy.load_catalog(entries.iter().map(|(s, n, c)| (s.as_str(), n.as_str(), *c)));
    // Views are classified from scratch (a view another view reads is
    // handled through `pg_depend`, below).
    policy.load_views([]);

    let views: Vec<(View, String)> = client
        .query(VIEWS, &[])
        .await?
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    let mut calls = Vec::new();
    let mut reads = Vec::new();
    for r in client.query(VIEW_DEPENDENCIES, &[]).await? {
        let view: View = (r.get(0), r.get(1));
        let target: View = (r.get(3), r.get(4));
        let kind: String = r.get(2);
        if kind == "f" {
            calls.push((view, target));
        } else {
            reads.push((view, target));
        }
    }
    let writing = writing_views(policy, &views, &calls, &reads);
    policy.load_views(writing.iter().map(|(s, n)| (s.as_str(), n.as_str())));
    tracing::debug!(
        views = views.len(),
        writing = writing.len(),
        "views classified"
    );
    Ok(entries.len())
}

/// The views that may write, given `policy`'s functions: a view writes if
/// it calls a VOLATILE function that is not known read-only (`calls`, from
/// `pg_depend`: exact, and it sees casts that the text hides), if its
/// definition classifies as a write (built-ins such as `nextval()`, which
/// `pg_depend` does not record, row locks; a definition that does not parse
/// counts as a write), or if it reads a view that writes (`reads`).
fn writing_views(
    policy: &FunctionPolicy,
    views: &[(View, String)],
    calls: &[(View, View)],
    reads: &[(View, View)],
) -> HashSet<View> {
    let mut writing: HashSet<View> = calls
        .iter()
        .filter(|(_, (schema, name))| !policy.read_safe(&[schema.clone(), name.clone()]))
        .map(|(view, _)| view.clone())
        .collect();
    for (view, definition) in views {
        if !writing.contains(view) && classify(definition, policy).route == Route::Primary {
            writing.insert(view.clone());
        }
    }
    // Through views of views, to a fixed point (each round adds one at
    // least, so at most one round per view).
    loop {
        let more: Vec<View> = reads
            .iter()
            .filter(|(view, read)| writing.contains(read) && !writing.contains(view))
            .map(|(view, _)| view.clone())
            .collect();
        if more.is_empty() {
            return writing;
        }
        writing.extend(more);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(s: &str) -> View {
        let (schema, name) = s.split_once('.').unwrap_or(("public", s));
        (schema.to_owned(), name.to_owned())
    }

    #[test]
    fn views_that_may_write() {
        let mut policy = FunctionPolicy::new(["app.vouched".to_owned()]);
        policy.load_catalog([
            ("app", "record", 'v'),
            ("app", "vouched", 'v'),
            ("app", "lookup", 's'),
        ]);
        let def = |sql: &str| sql.to_owned();
        let views = vec![
            (view("app.plain"), def("SELECT t.id FROM app.t")),
            (
                view("app.calls_record"),
                def("SELECT app.record(t.id) FROM app.t"),
            ),
            (view("app.calls_vouched"), def("SELECT app.vouched(1)")),
            (view("app.calls_lookup"), def("SELECT app.lookup(1)")),
            (
                view("app.nextval"),
                def("SELECT nextval('app.s'::regclass) AS n"),
            ),
            (view("app.locks"), def("SELECT t.id FROM app.t FOR UPDATE")),
            (view("app.random"), def("SELECT random() AS r, now() AS t")),
            (view("app.odd"), def("SELECT (")),
            (view("app.on_writer"), def("SELECT * FROM app.nextval")),
            (view("app.on_on_writer"), def("SELECT * FROM app.on_writer")),
            (view("app.cast"), def("SELECT t.x::app.mytype FROM app.t")),
        ];
        let calls = vec![
            (view("app.calls_record"), view("app.record")),
            (view("app.calls_vouched"), view("app.vouched")),
            // A cast through a VOLATILE function: only pg_depend shows it.
            (view("app.cast"), view("app.record")),
        ];
        let reads = vec![
            (view("app.on_on_writer"), view("app.on_writer")),
            (view("app.on_writer"), view("app.nextval")),
            (view("app.plain"), view("app.random")),
        ];
        let mut got: Vec<String> = writing_views(&policy, &views, &calls, &reads)
            .into_iter()
            .map(|(s, n)| format!("{s}.{n}"))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                "app.calls_record",
                "app.cast",
                "app.locks",
                "app.nextval",
                "app.odd",
                "app.on_on_writer",
                "app.on_writer",
            ]
        );
    }
}
