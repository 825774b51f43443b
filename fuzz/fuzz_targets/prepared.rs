//! Named prepared statements in transaction mode (`prepared`): the
//! fuzz input is read as a script of client messages (Parse, Bind,
//! Describe, Close, Query, Execute, Sync, COPY ends, anything), server
//! replies (any tags, errors naming pooler-wide statements, ReadyForQuery
//! with any status), lost and new server connections, and eviction, driven
//! through `Rewriter`, `Replies`, `Ledger` and `undo` as the session drives
//! them (`session/forward/{scan,statements}.rs`). Checked:
//! - what the rewriter sends instead of a client message is whole protocol
//!   messages, and nothing when it lets the message pass as it is (its
//!   contract: "returns true when the message goes to the server as it is;
//!   otherwise what goes instead has been appended to `out`");
//! - what the client gets from a read of server bytes is whole messages;
//! - replies pgswitch makes are due only as whole messages;
//! - statement memory is given back: once every holder is gone, the bytes
//!   gauge is zero.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pgswitch::config::PoolMode;
use pgswitch::prepared::{
    undo, ClientStatements, Interner, Replies, Rewriter, ServerStatements,
};
use pgswitch::protocol::frame::{whole_messages, Item, HEADER_LEN};
use pgswitch::protocol::Splitter;
use pgswitch::session::ledger::Ledger;
use prometheus::IntGauge;

/// Statement names clients use ("" is the unnamed statement).
const NAMES: [&str; 4] = ["", "a", "b", "p"];
/// Statement texts, among them the SQL-level commands the rewriter reads.
const TEXTS: [&str; 14] = [
    "SELECT 1",
    "SELECT $1",
    "SET search_path = a",
    "DEALLOCATE a",
    "DEALLOCATE b",
    "DEALLOCATE ALL",
    "DISCARD ALL",
    "PREPARE p AS SELECT 1",
    "DEALLOCATE p",
    "PREPARE a AS SELECT 1; DEALLOCATE a",
    "",
    "BEGIN",
    "COPY t FROM STDIN",
    "LISTEN x",
];
/// Server message tags: replies to each kind of request, asynchronous
/// messages, COPY.
const REPLIES: &[u8] = b"123ntTCIsDEZZZNSAGc";

/// Reads the script.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[usize::from(self.byte().unwrap_or(0)) % from.len()]
    }

    /// Up to 15 raw bytes.
    fn raw(&mut self) -> Vec<u8> {
        let n = usize::from(self.byte().unwrap_or(0) % 16).min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b.to_vec()
    }

    /// A statement text from the list, or raw bytes.
    fn text(&mut self) -> Vec<u8> {
        let b = self.byte().unwrap_or(0);
        match TEXTS.get(usize::from(b)) {
            Some(t) => t.as_bytes().to_vec(),
            None if b % 2 == 0 => self.raw(),
            None => TEXTS[usize::from(b) % TEXTS.len()].as_bytes().to_vec(),
        }
    }

    fn name(&mut self) -> &'static [u8] {
        self.pick(&NAMES).as_bytes()
    }
}

/// What one server connection and its client know.
struct Link {
    client: ClientStatements,
    server: ServerStatements,
    ledger: Ledger,
    status: u8,
    rerun: bool,
    cap: usize,
}

fuzz_target!(|data: &[u8]| {
    let gauge = IntGauge::new("fuzz_prepared_bytes", "statement bytes").expect("gauge");
    {
        let interner = Interner::new(gauge.clone());
        let mut s = Script(data);
        let cap = usize::from(s.byte().unwrap_or(0) % 4) + 1;
        let mut link = Link {
            client: ClientStatements::default(),
            server: ServerStatements::default(),
            ledger: Ledger::default(),
            status: b'I',
            rerun: false,
            cap,
        };
        while let Some(op) = s.byte() {
            step(op, &mut s, &mut link, &interner);
        }
    }
    assert_eq!(
        gauge.get(),
        0,
        "statement bytes still counted after all were dropped"
    );
});

fn step(op: u8, s: &mut Script, link: &mut Link, interner: &Interner) {
    match op % 16 {
        0 | 1 => {
            // Parse: name, text, maybe one parameter type.
            let mut body = s.name().to_vec();
            body.push(0);
            body.extend(s.text());
            body.push(0);
            match s.byte().unwrap_or(0) % 3 {
                0 => body.extend([0, 0]),
                1 => body.extend([0, 1, 0, 0, 0, 23]),
                _ => body.extend(s.raw()),
            }
            client(link, interner, b'P', Some(&body));
        }
        2 | 3 => {
            // Bind: portal, statement, then parameters and formats.
            let mut body = if s.byte().unwrap_or(0) % 4 == 0 {
                b"p".to_vec()
            } else {
                Vec::new()
            };
            body.push(0);
            body.extend(s.name());
            body.push(0);
            match s.byte().unwrap_or(0) % 2 {
                0 => body.extend([0, 0, 0, 0, 0, 0]),
                _ => body.extend(s.raw()),
            }
            client(link, interner, b'B', Some(&body));
        }
        4 | 5 => {
            // Describe or Close, of a statement or a portal.
            let tag = s.pick(b"DC");
            let mut body = vec![s.pick(b"SSP")];
            body.extend(s.name());
            body.push(0);
            client(link, interner, tag, Some(&body));
        }
        6 => {
            let mut body = s.text();
            body.push(0);
            client(link, interner, b'Q', Some(&body));
        }
        7 | 8 => {
            // Messages read by their header only.
            let tag = s.pick(b"ESSSHcfdF");
            client(link, interner, tag, None);
        }
        9 => {
            // Anything at all, whole or not.
            let tag = s.byte().unwrap_or(0);
            let body = s.raw();
            let whole = s.byte().unwrap_or(0) % 2 == 0;
            client(link, interner, tag, whole.then_some(&body[..]));
        }
        10..=12 => server(link, s),
        13 => {
            // Replies pgswitch makes, sent when nothing is owed before them.
            let mut made = Vec::new();
            let mut skipped = Vec::new();
            link.ledger.due(&mut made, &mut skipped);
            assert_eq!(framed(&made), made.len(), "replies made: {made:?}");
            undo(skipped, &mut link.client, &mut link.server);
        }
        14 => {
            // The server is lost (everything owed is undone); the client
            // goes on with a new connection, its request re-run there or
            // not.
            let undone = link.ledger.abandon();
            undo(undone, &mut link.client, &mut link.server);
            assert!(link.ledger.is_empty());
            link.server = ServerStatements::default();
            link.status = b'I';
            link.rerun = s.byte().unwrap_or(0) % 2 == 0;
        }
        _ => {
            // Between transactions: the connection's cap, or a refusal.
            if s.byte().unwrap_or(0) % 2 == 0 {
                if link.ledger.is_empty() {
                    let evicted = link.server.over_cap(link.cap);
                    assert!(link.server.len() <= link.cap, "{evicted:?}");
                }
            } else {
                let tag = s.pick(b"QP");
                let mut out = BytesMut::new();
                let mut rw = rewriter(link, interner);
                let sent = rw.refuse_feature(tag, "LISTEN", PoolMode::Transaction, &mut out);
                assert!(!sent);
                assert_eq!(framed(&out), out.len(), "refusal: {out:?}");
            }
        }
    }
}

fn rewriter<'a>(link: &'a mut Link, interner: &'a Interner) -> Rewriter<'a> {
    Rewriter {
        client: &mut link.client,
        server: &mut link.server,
        ledger: &mut link.ledger,
        status: link.status,
        interner,
        client_cap: link.cap,
        rerun: link.rerun,
        parsed: 0,
        reused: 0,
        wiped: false,
        sql_prepared: false,
    }
}

/// One client message through the rewriter.
fn client(link: &mut Link, interner: &Interner, tag: u8, body: Option<&[u8]>) {
    let mut out = BytesMut::new();
    let mut rw = rewriter(link, interner);
    let text = body.and_then(|b| pgswitch::sqltext::Text::of_request(tag, b));
    let sent = rw.message(tag, body, text, &mut out);
    let shown = body.map(String::from_utf8_lossy);
    assert_eq!(
        framed(&out),
        out.len(),
        "'{}' {shown:?} became {out:?}",
        char::from(tag)
    );
    assert!(
        !sent || out.is_empty(),
        "'{}' {shown:?} passes as it is, yet {out:?} was made to go with it",
        char::from(tag)
    );    // As the client sent it (scan_client does the same after the rewriter).
    link.ledger.client(tag);
}

/// One read of server bytes through `Replies`, as `scan_server` walks it.
fn server(link: &mut Link, s: &mut Script) {
    let count = s.byte().unwrap_or(0) % 6 + 1;
    let mut buf = Vec::new();
    for _ in 0..count {
        let tag = s.pick(REPLIES);
        let body: Vec<u8> = match tag {
            b'Z' => vec![s.pick(b"IITE")],
            b'E' => {
                // Sometimes naming one of the pooler-wide statements.
                let named = link
                    .client
                    .iter()
                    .next()
                    .map(|(_, st)| st.name().to_owned());
                let name = match (s.byte().unwrap_or(0) % 2, named) {
                    (0, Some(n)) => n,
                    _ => "x".to_owned(),
                };
                format!("SERROR\0VERROR\0C26000\0Mprepared statement \"{name}\" does not exist\0\0")
                    .into_bytes()
            }
            b'C' => b"SELECT 1\0".to_vec(),
            b'D' => b"\0\x01\0\0\0\x011".to_vec(),
            b'S' => b"search_path\0a\0".to_vec(),
            b'T' | b'N' | b'A' => s.raw(),
            _ => Vec::new(),
        };
        buf.push(tag);
        buf.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        buf.extend_from_slice(&body);
    }

    let mut replies = Replies::default();
    let mut split = Splitter::new(1 << 20);
    let mut pos = 0;
    while let Some((item, n)) = split
        .next(&buf[pos..], |t| matches!(t, b'Z' | b'S' | b'E'))
        .expect("well-formed server bytes")
    {
        let client = Some(&link.client);
        match item {
            Item::Whole { tag, body } => {
                replies.message(&mut link.ledger, client, &buf, (pos, n), tag, Some(body));
                if tag == b'Z' {
                    link.status = body.first().copied().unwrap_or(b'I');
                }
            }
            Item::Header { tag, .. } => {
                replies.message(&mut link.ledger, client, &buf, (pos, n), tag, None)
            }
            Item::Body => replies.body(&buf, (pos, n)),
        }
        pos += n;
    }
    assert_eq!(pos, buf.len());
    let out = replies.finish(&mut link.ledger, &buf, pos);
    if let Some(out) = &out {
        assert_eq!(
            framed(out),
            out.len(),
            "from {buf:?} the client gets {out:?}"
        );
    }
    let undone = std::mem::take(&mut replies.undo);
    undo(undone, &mut link.client, &mut link.server);
}

/// How many bytes of `buf` are whole messages, from the start on.
fn framed(buf: &[u8]) -> usize {
    whole_messages(buf)
        .map(|(_, body)| HEADER_LEN + body.len())
        .sum()
}
