//! The admin console's command parser (`admin::command::Command::parse`) on
//! arbitrary text, and `SHOW ROUTE`'s statement through the router as the
//! console does. Checked: errors have a SQLSTATE and a message; keywords
//! are case-insensitive; a trailing `;` and surrounding whitespace change
//! nothing; `SHOW ROUTE` always carries a statement.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgswitch::admin::command::{Command, Show};
use pgswitch::router::{route, FunctionPolicy};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = Command::parse(&text);
    match &parsed {
        Ok(Command::Show(Show::Route(sql))) => {
            assert!(!sql.is_empty() && sql.trim() == sql);
            if let Err(e) = route(sql, &FunctionPolicy::new([])) {
                let _ = e.to_string();
            }
        }
        Ok(_) => {}
        Err(e) => {
            assert_eq!(e.sqlstate().len(), 5);
            assert!(!e.to_string().is_empty());
        }
    }
    // Padding and a terminating semicolon, as psql sends it.
    if !text.trim_end().ends_with(';') {
        assert_eq!(Command::parse(&format!("\n {text} ;\t")), parsed);
    }
    // Keywords in any case: only the commands without names or statements.
    if let Ok(c @ (Command::Show(Show::Pools | Show::Stats | Show::Help) | Command::Reload)) =
        &parsed
    {
        assert_eq!(Command::parse(&text.to_lowercase()).as_ref(), Ok(c));
        assert_eq!(Command::parse(&text.to_uppercase()).as_ref(), Ok(c));
    }
});
