//! `pgswitch import-pgbouncer pgbouncer.ini [userlist.txt]`: an equivalent
//! `pgswitch.toml` from a PgBouncer configuration, printed with a comment
//! on every setting that has no equivalent (or needs a look), so that a
//! migration starts from the file the operator already has.

mod pgbouncer;

pub use pgbouncer::{import, Imported};
