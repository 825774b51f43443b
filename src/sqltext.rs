//! A statement's text as the session reads it: checked as UTF-8 once, and
//! scanned once for the words that the session-state rules
//! (`session::effects`) and the prepared-statement rewriter
//! (`prepared::sql`) look for. Almost every statement names none of them,
//! and both then skip their own reading of it.

use std::sync::LazyLock;

use aho_corasick::packed::{self, MatchKind};
use aho_corasick::{AhoCorasick, AhoCorasickKind, Span};

/// Words (in any case) of which every session-state rule needs at least
/// one: the keywords that start a statement of interest (`SET` and `RESET`
/// both contain "set"), the functions it looks for (`set_config` and
/// `setseed` contain "set", every session advisory lock
/// "advisory_lock"), `INTO`, and `U&` (names spelled with escapes). Quoted
/// names are looked at as written, so they contain these too.
pub const SESSION_TRIGGERS: [&str; 11] = [
    "set",
    "listen",
    "load",
    "discard",
    "declare",
    "create",
    "prepare",
    "do",
    "into",
    "advisory_lock",
    "u&",
];

/// The first words of the SQL-level prepared-statement commands
/// (`DEALLOCATE ALL` and `DISCARD ALL` forget them all).
pub const PREPARED_KEYWORDS: [&str; 3] = ["prepare", "deallocate", "discard"];

/// Which of the two word lists a text contains (a word found by chance,
/// "offset" or "order", only costs the full look).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Words {
    /// Any of [`SESSION_TRIGGERS`].
    pub session: bool,
    /// Any of [`PREPARED_KEYWORDS`].
    pub prepared: bool,
}

/// The session-state rules that look past a statement's first word: the
/// functions `calls` looks for (every session advisory lock contains
/// "advisory_lock"), `SELECT ... INTO TEMP` and names spelled with escapes.
/// The other triggers are statements' first words ([`LEADING`]).
const ANYWHERE: &[&[u8]] = &[b"set_config", b"setseed", b"advisory_lock", b"u&", b"into"];

/// The first words of the statements the session-state rules look at
/// (`EXPLAIN ANALYZE` runs a `CREATE TABLE ... AS`).
const LEADING: [&str; 10] = [
    "set", "reset", "listen", "load", "discard", "declare", "create", "prepare", "do", "explain",
];

impl Words {
    /// `sql` scanned for both lists, in one scan for almost every
    /// statement. A single statement that starts with a plain word is
    /// judged by that word and one scan for the words that matter anywhere
    /// (`UPDATE ... SET` and `INSERT INTO` are not mistaken for `SET` and
    /// `SELECT INTO`); any other text by one scan for the words of both
    /// lists and, if it has some, the whole lists.
    pub fn of(sql: &str) -> Words {
        // The common case first: the automaton's scans cost several times more.
        if let Some(lead) = single_statement_lead(sql) {
            // A word of the lists whose first letter differs costs one
            // byte's comparison (`SELECT`, the most common, meets only `set`).
            let first = lead.as_bytes()[0].to_ascii_lowercase();
            let is = |k: &&str| k.as_bytes()[0] == first && lead.eq_ignore_ascii_case(k);
            let dml = is(&"insert") || is(&"merge");
            let anywhere = || match dml {
                true => ANYWHERE_DML_WORDS.contains(sql.as_bytes()),
                false => ANYWHERE_WORDS.contains(sql.as_bytes()),
            };
            return Words {
                session: LEADING.iter().any(is) || anywhere(),
                prepared: PREPARED_KEYWORDS.iter().any(is),
            };
        }
        if !ALL_WORDS.contains(sql.as_bytes()) {
            return Words::default();
        }
        let Some(first) = ALL.0.find(sql) else {
            return Words::default();
        };
        let w = ALL.1[first.pattern().as_usize()];
        Words {
            session: w.session || SESSION.is_match(sql),
            prepared: w.prepared || PREPARED.is_match(sql),
        }
    }
}

/// The first word of `sql` when it is one statement (no `;` but maybe a
/// last one) that starts, after whitespace and `--` comments, with a plain
/// ASCII word: what the session lexer would read as its first word.
/// `None` whenever that is less than certain (a block comment first, a
/// quoted or non-ASCII name, a `;` inside a string), for the full look.
fn single_statement_lead(sql: &str) -> Option<&str> {
    let b = sql.as_bytes();
    if let Some(semi) = memchr::memchr(b';', b) {
        if !b[semi + 1..].iter().all(u8::is_ascii_whitespace) {
            return None;
        }
    }
    let mut i = 0;
    loop {
        match b.get(i..) {
            Some([c, ..]) if c.is_ascii_whitespace() => i += 1,
            Some([b'-', b'-', ..]) => i += memchr::memchr2(b'\n', b'\r', &b[i..])?,
            _ => break,
        }
    }
    let start = i;
    while b
        .get(i)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    {
        i += 1;
    }
    let ends_word = match b.get(i) {
        None => true,
        Some(&c) => c.is_ascii() && c != b'$',
    };
    let lead = &sql[start..i];
    (ends_word && lead.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')).then_some(lead)
}

/// A list of words (lowercase ASCII, two bytes or more) looked for in any
/// case, and compared only where a word's first two letters stand: what an
/// automaton of the list would find (tests check it), several times faster
/// on the short texts statements are. Those two letters are found with
/// aho-corasick's SIMD searcher (Teddy) in texts long enough for it, and
/// with a table lookup per pair of bytes in the rest.
struct WordSet {
    words: &'static [&'static [u8]],
    /// A bit for every pair of bytes that starts a word, in either case
    /// (bit `first << 8 | second`).
    pairs: [u64; 1024],
    /// The same pairs, for the SIMD searcher (see [`pair_searcher`]).
    searcher: &'static LazyLock<Option<packed::Searcher>>,
}

/// A searcher for the first two bytes of `words`, in every case, or
/// `None` where the SIMD searcher is not available (or declines them).
fn pair_searcher(words: &[&[u8]]) -> Option<packed::Searcher> {
    let mut pairs: Vec<[u8; 2]> = Vec::new();
    for w in words {
        let (a, b) = (w[0], w[1]);
        for first in [a, a.to_ascii_uppercase()] {
            for second in [b, b.to_ascii_uppercase()] {
                pairs.push([first, second]);
            }
        }
    }
    pairs.sort_unstable();
    pairs.dedup();
    // `None` unless it is Teddy; below Teddy's minimum length it would
    // fall back to Rabin-Karp, slower than the table (`contains`).
    packed::Config::new()
        .match_kind(MatchKind::LeftmostFirst)
        .builder()
        .extend(&pairs)
        .build()
}

impl WordSet {
    const fn new(
        words: &'static [&'static [u8]],
        searcher: &'static LazyLock<Option<packed::Searcher>>,
    ) -> WordSet {
        let mut pairs = [0u64; 1024];
        let mut w = 0;
        while w < words.len() {
            let (a, b) = (words[w][0], words[w][1]);
            let firsts = [a, a.to_ascii_uppercase()];
            let seconds = [b, b.to_ascii_uppercase()];
            let mut i = 0;
            while i < 4 {
                let pair = (firsts[i / 2] as usize) << 8 | seconds[i % 2] as usize;
                pairs[pair >> 6] |= 1 << (pair & 63);
                i += 1;
            }
            w += 1;
        }
        WordSet {
            words,
            pairs,
            searcher,
        }
    }

    /// Whether `b` contains any of the words, in any case.
    fn contains(&self, b: &[u8]) -> bool {
        match &**self.searcher {
            Some(s) if b.len() >= s.minimum_len() => self.search(s, b),
            _ => self.lookup(b),
        }
    }

    /// `contains` with the SIMD searcher: each place a word's first two
    /// letters stand is compared, and the search goes on from the byte
    /// after it (the next place may overlap this one).
    fn search(&self, s: &packed::Searcher, b: &[u8]) -> bool {
        let mut at = 0;
        while let Some(m) = s.find_in(b, Span::from(at..b.len())) {
            if self.starts(&b[m.start()..]) {
                return true;
            }
            at = m.start() + 1;
        }
        false
    }

    /// `contains` with the table: a load and a bit test per byte. The
    /// comparison is out of line, so that the loop keeps its registers
    /// (inlined, it spilled them, at twice the instructions per byte).
    fn lookup(&self, b: &[u8]) -> bool {
        for (i, w) in b.windows(2).enumerate() {
            let pair = (w[0] as usize) << 8 | w[1] as usize;
            if self.pairs[pair >> 6] & (1 << (pair & 63)) != 0 && self.starts(&b[i..]) {
                return true;
            }
        }
        false
    }

    /// Whether one of the words starts `b` (in any case; `b` holds two
    /// bytes at least, the pair that matched).
    #[inline(never)]
    fn starts(&self, b: &[u8]) -> bool {
        let (c0, c1) = (b[0].to_ascii_lowercase(), b[1].to_ascii_lowercase());
        self.words.iter().any(|w| {
            w[0] == c0
                && w[1] == c1
                && b.len() >= w.len()
                && b[2..w.len()].eq_ignore_ascii_case(&w[2..])
        })
    }
}

/// Every word of both lists (a test checks them against the lists).
const ALL_LIST: &[&[u8]] = &[
    b"set",
    b"listen",
    b"load",
    b"do",
    b"discard",
    b"declare",
    b"deallocate",
    b"create",
    b"prepare",
    b"into",
    b"advisory_lock",
    b"u&",
];
static ALL_WORDS: WordSet = WordSet::new(ALL_LIST, &ALL_SEARCHER);
static ALL_SEARCHER: LazyLock<Option<packed::Searcher>> = LazyLock::new(|| pair_searcher(ALL_LIST));

/// [`ANYWHERE`], and the same but `INTO` for an `INSERT` or `MERGE`, where
/// it names the target (as `effects::calls`).
static ANYWHERE_WORDS: WordSet = WordSet::new(ANYWHERE, &ANYWHERE_SEARCHER);
static ANYWHERE_SEARCHER: LazyLock<Option<packed::Searcher>> =
    LazyLock::new(|| pair_searcher(ANYWHERE));
const ANYWHERE_DML: &[&[u8]] = &[b"set_config", b"setseed", b"advisory_lock", b"u&"];
static ANYWHERE_DML_WORDS: WordSet = WordSet::new(ANYWHERE_DML, &ANYWHERE_DML_SEARCHER);
static ANYWHERE_DML_SEARCHER: LazyLock<Option<packed::Searcher>> =
    LazyLock::new(|| pair_searcher(ANYWHERE_DML));

fn automaton<P: AsRef<[u8]>>(patterns: &[P]) -> AhoCorasick {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .kind(Some(AhoCorasickKind::DFA))
        .build(patterns)
        .unwrap_or_else(|e| panic!("statement words: {e}"))
}

/// Both lists, and which list each pattern is on.
static ALL: LazyLock<(AhoCorasick, Vec<Words>)> = LazyLock::new(|| {
    let mut patterns: Vec<&str> = SESSION_TRIGGERS.to_vec();
    patterns.extend(
        PREPARED_KEYWORDS
            .iter()
            .filter(|k| !SESSION_TRIGGERS.contains(k)),
    );
    let lists = patterns
        .iter()
        .map(|p| Words {
            session: SESSION_TRIGGERS.contains(p),
            prepared: PREPARED_KEYWORDS.contains(p),
        })
        .collect();
    (automaton(&patterns), lists)
});
static SESSION: LazyLock<AhoCorasick> = LazyLock::new(|| automaton(&SESSION_TRIGGERS));
static PREPARED: LazyLock<AhoCorasick> = LazyLock::new(|| automaton(&PREPARED_KEYWORDS));

/// A statement's text, valid UTF-8, with what [`Words::of`] found in it.
#[derive(Debug, Clone, Copy)]
pub struct Text<'a> {
    pub sql: &'a str,
    pub words: Words,
}

impl<'a> Text<'a> {
    pub fn new(sql: &'a str) -> Text<'a> {
        Text {
            sql,
            words: Words::of(sql),
        }
    }

    /// The statement text of a Query (`sql\0`) or Parse (`name\0 sql\0
    /// ...`) body; `None` for other messages and for text that is not
    /// UTF-8.
    pub fn of_request(tag: u8, body: &'a [u8]) -> Option<Text<'a>> {
        request_sql(tag, body).map(Text::new)
    }

    /// `of_request` for a text only the statistics read (session mode,
    /// where no rule looks at it): not scanned, its words read as none.
    pub fn of_request_unscanned(tag: u8, body: &'a [u8]) -> Option<Text<'a>> {
        let sql = request_sql(tag, body)?;
        Some(Text {
            sql,
            words: Words::default(),
        })
    }
}

/// The statement text of a Query or Parse body (see `Text::of_request`).
fn request_sql(tag: u8, body: &[u8]) -> Option<&str> {
    let b = match tag {
        b'P' => &body[memchr::memchr(0, body)? + 1..],
        b'Q' => body,
        _ => return None,
    };
    let end = memchr::memchr(0, b).unwrap_or(b.len());
    std::str::from_utf8(&b[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_lists_are_found_in_one_scan_in_any_case() {
        let none = Words::default();
        assert_eq!(Words::of("SELECT 1"), none);
        assert_eq!(
            Words::of("SELECT abalance FROM pgbench_accounts WHERE aid = $1"),
            none
        );
        let session = Words {
            session: true,
            prepared: false,
        };
        let both = Words {
            session: true,
            prepared: true,
        };
        assert_eq!(Words::of("reset all"), session);
        assert_eq!(Words::of("SELECT SET_CONFIG('a', 'b', false)"), session);
        assert_eq!(Words::of("select U&\"x\""), session);
        assert_eq!(Words::of("PREPARE p AS SELECT 1"), both);
        assert_eq!(Words::of("discard all"), both);
        assert_eq!(
            Words::of("DeAllocate p"),
            Words {
                session: false,
                prepared: true,
            }
        );
        // A trigger after a prepared keyword, and one inside another word.
        assert_eq!(Words::of("deallocate p; set x = 1"), both);
        assert_eq!(Words::of("deallocate p; select 1 into t"), both);
    }

    #[test]
    fn the_quick_look_finds_what_the_automaton_finds() {
        let mut words = ALL_WORDS.words.to_vec();
        words.sort();
        let mut lists: Vec<&[u8]> = SESSION_TRIGGERS
            .iter()
            .chain(&PREPARED_KEYWORDS)
            .map(|w| w.as_bytes())
            .collect();
        lists.sort();
        lists.dedup();
        assert_eq!(words, lists, "ALL_WORDS holds both lists");
        let dml: Vec<&[u8]> = ANYWHERE_WORDS
            .words
            .iter()
            .copied()
            .filter(|w| *w != b"into")
            .collect();
        assert_eq!(
            ANYWHERE_DML_WORDS.words, dml,
            "the DML list is the same but INTO"
        );
        let anywhere_automaton = automaton(ANYWHERE);
        let pieces = [
            "s",
            "S",
            "e",
            "E",
            "t",
            "T",
            "set",
            "SeT",
            "u",
            "U",
            "&",
            "do",
            "D",
            "o",
            "into",
            "INT",
            "advisory_lock",
            "Advisory_Lock",
            "advisory_loc",
            "listen",
            "load",
            "LOA",
            "discard",
            "declare",
            "deallocate",
            "create",
            "prepare",
            "prepar",
            "_config",
            "seed",
            "set_confi",
            "setsee",
            " ",
            "x",
            "é",
            "_",
            "1",
            "'",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..200_000 {
            let mut text = String::new();
            for _ in 0..seed % 24 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            }
            seed = seed.wrapping_add(0x9e37_79b9);
            let b = text.as_bytes();
            let found = ALL.0.find(&text).is_some();
            assert_eq!(ALL_WORDS.contains(b), found, "{text:?}");
            assert_eq!(ALL_WORDS.lookup(b), found, "{text:?}");
            let found = anywhere_automaton.is_match(&text);
            assert_eq!(ANYWHERE_WORDS.contains(b), found, "{text:?}");
            assert_eq!(ANYWHERE_WORDS.lookup(b), found, "{text:?}");
            if let Some(s) = &**ANYWHERE_WORDS.searcher {
                assert_eq!(ANYWHERE_WORDS.search(s, b), found, "{text:?}");
            }
        }
    }

    #[test]
    fn a_single_statement_is_judged_by_its_first_word() {
        let none = Words::default();
        assert_eq!(Words::of("UPDATE t SET a = a + 1 WHERE id = 2;"), none);
        assert_eq!(Words::of("insert into t (a) values (1)"), none);
        assert_eq!(Words::of("-- a note\n  UPDATE t SET a = 1"), none);
        assert!(Words::of("-- a note\rSET a = 1\nUPDATE t SET a = 1").session);
        // The words that matter anywhere still count.
        assert!(Words::of("UPDATE t SET a = set_config('x', 'y', false)").session);
        assert!(Words::of("SELECT 1 INTO TEMP t").session);
        assert!(Words::of("update t set a = U&\"\\0061\"").session);
        assert!(Words::of("  set x = 1;  ").session);
        assert!(Words::of("Reset all").session);
        // Less than certain: the whole lists.
        assert!(Words::of("UPDATE t SET a = 1; SELECT 2").session);
        assert!(Words::of("/* c */ UPDATE t SET a = 1").session);
        assert!(Words::of("UPDATE t SET a = 'x;y'").session);
        assert!(Words::of("\"update\" t SET a = 1").session);
        assert!(Words::of("UPDATE$x SET a = 1").session);
        assert!(Words::of("UPDATEé SET a = 1").session);
        assert!(Words::of("deallocate p; insert into t values (1)").prepared);
        assert!(!Words::of("UPDATE t SET prepared = 1").prepared);
        // SELECT, the most common first word, is on neither list.
        assert!(!LEADING.contains(&"select") && !PREPARED_KEYWORDS.contains(&"select"));
        assert!(Words::of("select pg_advisory_lock(1)").session);
        assert_eq!(Words::of("Select 1 from t where a = 'set'"), none);
    }

    #[test]
    fn request_texts_are_the_statement_of_a_query_or_parse() {
        let q = Text::of_request(b'Q', b"SET x = 1\0").map(|t| (t.sql, t.words.session));
        assert_eq!(q, Some(("SET x = 1", true)));
        let p = Text::of_request(b'P', b"s1\0SELECT 1\0\0\0").map(|t| t.sql);
        assert_eq!(p, Some("SELECT 1"));
        assert!(Text::of_request(b'Q', b"\xff\0").is_none());
        let plain = Text::of_request_unscanned(b'Q', b"SET x = 1\0").map(|t| (t.sql, t.words));
        assert_eq!(plain, Some(("SET x = 1", Words::default())));
        assert!(Text::of_request(b'B', b"\0\0").is_none());
    }
}
