//! Statement fingerprints: the text with literals and parameters replaced by
//! `?`, comments dropped, whitespace collapsed and case folded outside
//! quotes, and runs of comma-separated placeholders folded into one `?`
//! (`IN (1, 2, 3)`, `VALUES (1, 'a')` and `generate_series(1, 3)` all
//! become `(?)`, so lists of any length share a fingerprint). One pass over the
//! bytes, no parse: cheap enough for every statement. The same scanner
//! feeds a hash (the key, no allocation) or a string (the text shown, once
//! per new fingerprint), so the two always agree.

use std::hash::Hasher;

/// Where normalized pieces go.
trait Sink {
    fn push(&mut self, s: &[u8]);
    /// `s` with ASCII letters lowercased (as Postgres folds unquoted
    /// names), without allocating.
    fn push_lower(&mut self, s: &[u8]);
    /// `push_lower(&text[start..end])`, for sinks that gain from reading
    /// the text around the word.
    #[inline(always)]
    fn push_word(&mut self, text: &[u8], start: usize, end: usize) {
        self.push_lower(&text[start..end]);
    }
    /// One byte (a space, a `?`, a punctuation mark): most tokens.
    fn push_byte(&mut self, c: u8);
}

impl Sink for Vec<u8> {
    fn push(&mut self, s: &[u8]) {
        self.extend_from_slice(s);
    }

    fn push_lower(&mut self, s: &[u8]) {
        self.extend(s.iter().map(u8::to_ascii_lowercase));
    }

    fn push_byte(&mut self, c: u8) {
        self.push(c);
    }
}

/// Hashes the normalized text in blocks of `BLOCK` bytes, whatever the
/// pieces it arrives in (a hasher's call per piece cost more than the
/// scan): the key depends on the text alone.
struct HashSink<H: Hasher> {
    hasher: H,
    block: [u8; BLOCK],
    len: usize,
}

const BLOCK: usize = 128;

impl<H: Hasher> HashSink<H> {
    #[inline(always)]
    fn put(&mut self, mut s: &[u8], lower: bool) {
        loop {
            let n = (BLOCK - self.len).min(s.len());
            let dst = &mut self.block[self.len..self.len + n];
            if lower {
                for (d, c) in dst.iter_mut().zip(&s[..n]) {
                    *d = c.to_ascii_lowercase();
                }
            } else {
                dst.copy_from_slice(&s[..n]);
            }
            self.len += n;
            s = &s[n..];
            if s.is_empty() {
                return;
            }
            self.hasher.write(&self.block);
            self.len = 0;
        }
    }

    fn finish(mut self) -> u64 {
        self.hasher.write(&self.block[..self.len]);
        self.hasher.finish()
    }
}

// Inlined into the scanner (its every token): a call per piece costs as
// much as the piece's copy.
impl<H: Hasher> Sink for HashSink<H> {
    #[inline(always)]
    fn push(&mut self, s: &[u8]) {
        self.put(s, false);
    }

    #[inline(always)]
    fn push_lower(&mut self, s: &[u8]) {
        self.put(s, true);
    }

    /// Eight bytes at a time where the text and the block have room: a
    /// word's bytes are read in eight-byte loads (past its end within the
    /// text), lowercased together, and stored whole; what lies past the
    /// word in the block is overwritten by what comes next, and never
    /// hashed (`len` moves by the word's length only).
    #[inline(always)]
    fn push_word(&mut self, text: &[u8], start: usize, end: usize) {
        let mut i = start;
        while i < end && self.len + 8 <= BLOCK {
            let Some(chunk) = text.get(i..i + 8) else {
                break;
            };
            let mut eight = [0u8; 8];
            eight.copy_from_slice(chunk);
            let lower = lower8(u64::from_le_bytes(eight));
            self.block[self.len..self.len + 8].copy_from_slice(&lower.to_le_bytes());
            let k = (end - i).min(8);
            self.len += k;
            i += k;
        }
        if i < end {
            self.put(&text[i..end], true);
        }
    }

    #[inline(always)]
    fn push_byte(&mut self, c: u8) {
        if self.len == BLOCK {
            self.hasher.write(&self.block);
            self.len = 0;
        }
        self.block[self.len] = c;
        self.len += 1;
    }
}

/// Eight bytes lowercased at once, as `u8::to_ascii_lowercase` each: a
/// byte is an ASCII capital when its low seven bits are at least `A` and
/// below `[`, and its high bit is clear; those gain 0x20.
#[inline(always)]
fn lower8(x: u64) -> u64 {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low7 = x & !HIGH;
    let from_a = low7.wrapping_add(0x3f3f_3f3f_3f3f_3f3f); // >= 'A'
    let past_z = low7.wrapping_add(0x2525_2525_2525_2525); // >= '['
    let capital = from_a & !past_z & !x & HIGH;
    x | (capital >> 2)
}

/// The fingerprint's key. foldhash (its quality variant, a fixed seed:
/// the same key in every process) keys statistics and the route cache as
/// they are (see `stats`), so its every bit counts.
///
/// Each thread remembers the last text it keyed (up to `MEMO_MAX` bytes)
/// and its key: the router and the statistics key the same statement one
/// after the other, and a client that repeats a statement repeats its
/// text. A hit costs a comparison of the text, and the text decides: the
/// memo never answers for another text.
pub fn key(sql: &str) -> u64 {
    key_of_bytes(sql.as_bytes())
}

/// `key` of a text not yet checked as UTF-8 (the scanner reads bytes).
pub fn key_of_bytes(sql: &[u8]) -> u64 {
    if sql.len() > MEMO_MAX {
        return key_now(sql);
    }
    MEMO.with_borrow_mut(|memo| match memo {
        Some((text, key)) if text.as_slice() == sql => *key,
        _ => {
            let key = key_now(sql);
            let (text, last) = memo.get_or_insert_with(|| (Vec::new(), key));
            text.clear();
            text.extend_from_slice(sql);
            *last = key;
            key
        }
    })
}

/// Texts longer than this are keyed without the memo (`key`).
const MEMO_MAX: usize = 4096;

thread_local! {
    static MEMO: std::cell::RefCell<Option<(Vec<u8>, u64)>> =
        const { std::cell::RefCell::new(None) };
}

fn key_now(sql: &[u8]) -> u64 {
    let mut sink = hash_sink();
    scan(sql, &mut sink);
    sink.finish()
}

/// The key of a fingerprint's whole text (`text(sql, usize::MAX)`): the
/// same as `key(sql)`, for the fuzz target that checks the two agree.
pub fn key_of_text(text: &str) -> u64 {
    let mut sink = hash_sink();
    sink.push(text.as_bytes());
    sink.finish()
}

fn hash_sink() -> HashSink<foldhash::quality::FoldHasher<'static>> {
    use std::hash::BuildHasher;
    const STATE: foldhash::quality::FixedState =
        foldhash::quality::FixedState::with_seed(0x7067_7377_6974_6368);
    HashSink {
        hasher: STATE.build_hasher(),
        block: [0; BLOCK],
        len: 0,
    }
}

/// The fingerprint's text (at most `max` bytes of it, then `...`).
pub fn text(sql: &str, max: usize) -> String {
    let mut out = Vec::new();
    scan(sql.as_bytes(), &mut out);
    // Pieces are cut at ASCII bytes only, so this is whole UTF-8.
    let mut out = String::from_utf8_lossy(&out).into_owned();
    if out.len() > max {
        let mut cut = max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

/// Byte classes, one table lookup per byte in the scanner's loops.
const SPACE: u8 = 1; // u8::is_ascii_whitespace
const WORD_START: u8 = 2; // ASCII letter or digit, `_`, any non-ASCII byte
const WORD: u8 = 4; // WORD_START or `$`
const LITERAL_START: u8 = 8; // where `literal` may find one

static CLASS: [u8; 256] = classes();

const fn classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let mut k = 0;
        if c.is_ascii_whitespace() {
            k |= SPACE;
        }
        if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 {
            k |= WORD_START | WORD;
        }
        if c == b'$' {
            k |= WORD;
        }
        if matches!(
            c,
            b'\'' | b'e' | b'E' | b'x' | b'X' | b'b' | b'B' | b'n' | b'N' | b'$' | b'.'
        ) || c.is_ascii_digit()
        {
            k |= LITERAL_START;
        }
        t[i] = k;
        i += 1;
    }
    t
}

/// What was emitted last, to collapse spaces and lists.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    Nothing,
    Placeholder,
    Comma,
    Open,
    Other,
}

/// Tokens are emitted with a single space between words; a `?` that
/// follows `?,` (a list) is folded into the first.
fn scan(b: &[u8], sink: &mut impl Sink) {
    let mut i = 0;
    let mut last = Last::Nothing;
    let mut pending_space = false;
    let mut in_list = false;
    while i < b.len() {
        let c = b[i];
        let class = CLASS[c as usize];
        // Whitespace.
        if class & SPACE != 0 {
            pending_space = true;
            i += 1;
            continue;
        }
        // Comments.
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                i += 1;
            }
            pending_space = true;
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            pending_space = true;
            continue;
        }
        let start = i;
        // Words are emitted with ASCII letters lowercased; a literal or
        // parameter (or the `?` operator) becomes `?`.
        let mut lower = false;
        let mut placeholder = false;
        let lit = match class & LITERAL_START {
            0 => None,
            _ => literal(b, i),
        };
        if let Some(end) = lit {
            i = end;
            placeholder = true;
        } else if c == b'"' {
            // Quoted identifier: kept as written.
            i += 1;
            while i < b.len() {
                if b[i] == b'"' {
                    if b.get(i + 1) == Some(&b'"') {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
        } else if class & WORD_START != 0 {
            i += 1;
            while i < b.len() && CLASS[b[i] as usize] & WORD != 0 {
                i += 1;
            }
            lower = true;
        } else {
            // Punctuation, one character at a time (ASCII here).
            i += 1;
            placeholder = c == b'?';
        }
        let punct = if lower || placeholder || c == b'"' {
            0
        } else {
            c
        };
        // `?, ?` inside a list folds into one `?`.
        if in_list && (punct == b',' || placeholder) {
            if placeholder {
                last = Last::Placeholder;
            }
            continue;
        }
        if punct == b',' && last == Last::Placeholder {
            in_list = true;
            continue;
        }
        in_list = false;
        // No space after `(` or before `)`, `,` and `;`.
        if pending_space
            && !matches!(last, Last::Nothing | Last::Open)
            && !matches!(punct, b')' | b',' | b';')
        {
            sink.push_byte(b' ');
        }
        pending_space = false;
        match (placeholder, lower) {
            (true, _) => sink.push_byte(b'?'),
            (false, true) => sink.push_word(b, start, i),
            (false, false) if punct != 0 => sink.push_byte(punct),
            (false, false) => sink.push(&b[start..i.min(b.len())]),
        }
        last = match punct {
            _ if placeholder => Last::Placeholder,
            b',' => Last::Comma,
            b'(' => Last::Open,
            _ => Last::Other,
        };
    }
}

/// If a literal or parameter starts at `i`, where it ends.
fn literal(b: &[u8], i: usize) -> Option<usize> {
    let c = b[i];
    let prev_is_word = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
    match c {
        b'\'' => Some(quoted(b, i + 1, false)),
        b'e' | b'E' if b.get(i + 1) == Some(&b'\'') && !prev_is_word => {
            Some(quoted(b, i + 2, true))
        }
        b'x' | b'X' | b'b' | b'B' | b'n' | b'N'
            if b.get(i + 1) == Some(&b'\'') && !prev_is_word =>
        {
            Some(quoted(b, i + 2, false))
        }
        b'$' => {
            // $1 parameter, or a $tag$ ... $tag$ string.
            let mut j = i + 1;
            if b.get(j).is_some_and(u8::is_ascii_digit) {
                while b.get(j).is_some_and(u8::is_ascii_digit) {
                    j += 1;
                }
                return Some(j);
            }
            while b
                .get(j)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
            {
                j += 1;
            }
            if b.get(j) != Some(&b'$') {
                return None;
            }
            let tag = &b[i..=j];
            let body = j + 1;
            let end = b[body..]
                .windows(tag.len())
                .position(|w| w == tag)
                .map_or(b.len(), |p| body + p + tag.len());
            Some(end)
        }
        b'0'..=b'9' if !prev_is_word => {
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'.' || b[j] == b'_') {
                // Exponent signs: 1e-5.
                if (b[j] == b'e' || b[j] == b'E') && matches!(b.get(j + 1), Some(b'-' | b'+')) {
                    j += 1;
                }
                j += 1;
            }
            Some(j)
        }
        b'.' if b.get(i + 1).is_some_and(u8::is_ascii_digit) && !prev_is_word => {
            let mut j = i + 1;
            while b.get(j).is_some_and(|c| c.is_ascii_alphanumeric()) {
                j += 1;
            }
            Some(j)
        }
        _ => None,
    }
}

/// End of a quoted string whose body starts at `i` (`''` doubles a quote;
/// with `backslash`, `\'` escapes one too).
fn quoted(b: &[u8], mut i: usize, backslash: bool) -> usize {
    while i < b.len() {
        match b[i] {
            b'\\' if backslash => i += 2,
            b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &str, b: &str) {
        assert_eq!(text(a, 1000), text(b, 1000), "{a} vs {b}");
        assert_eq!(key(a), key(b), "{a} vs {b}");
    }

    #[test]
    fn eight_bytes_lowercase_as_one_each() {
        for c in 0..=255u8 {
            for lane in 0..8 {
                let mut bytes = [b'x', b'Q', 0x80, b'[', b'@', b'Z', 0xc1, b'a'];
                bytes[lane] = c;
                let want = bytes.map(|b| b.to_ascii_lowercase());
                let got = lower8(u64::from_le_bytes(bytes)).to_le_bytes();
                assert_eq!(got, want, "byte {c:#x} in lane {lane}");
            }
        }
    }

    #[test]
    fn literals_and_parameters_become_placeholders() {
        assert_eq!(
            text(
                "SELECT * FROM accounts WHERE id = 42 AND name = 'bob'",
                1000
            ),
            "select * from accounts where id = ? and name = ?"
        );
        same(
            "select abalance from pgbench_accounts where aid = 1",
            "SELECT abalance\n  FROM pgbench_accounts WHERE aid = $1",
        );
        same(
            "SELECT 'it''s', E'a\\'b', 1.5e-3, $$x$$",
            "select ?, ?, ?, ?",
        );
        same(
            "SELECT * FROM t WHERE id IN (1, 2, 3)",
            "select * from t where id in ($1)",
        );
        same("/* pgswitch:replica */ SELECT 1 -- trailing", "SELECT 2");
        assert_eq!(
            text("SELECT \"Mixed\".\"Col\" FROM t1", 1000),
            "select \"Mixed\".\"Col\" from t1"
        );
    }

    #[test]
    fn the_memo_answers_for_its_own_text_only() {
        let long = format!("SELECT '{}'", "x".repeat(MEMO_MAX));
        let texts = [
            "", "SELECT a", "SELECT a", "SELECT b", "", &long, "SELECT a",
        ];
        for sql in texts {
            assert_eq!(key(sql), key_now(sql.as_bytes()), "{sql:.20}");
        }
        assert_ne!(key("SELECT a"), key("SELECT b"));
        assert_eq!(key("SELECT 1"), key("select  2"));
    }

    #[test]
    fn the_key_follows_the_normalized_text() {
        let cols: Vec<String> = (0..40).map(|i| format!("col_{i}")).collect();
        let a = format!("SELECT {} FROM t WHERE id = 1", cols.join(", "));
        let b = format!(
            "select  {}\n from T -- note\n where ID = 2",
            cols.join(",\n   ")
        );
        assert!(text(&a, 1 << 20).len() > 256);
        assert_eq!(text(&a, 1 << 20), text(&b, 1 << 20));
        assert_eq!(key(&a), key(&b));
        assert_eq!(key(&a), key_of_text(&text(&a, usize::MAX)));
        let c = a.replace("col_39", "col_38");
        assert_ne!(key(&a), key(&c));
        // Long mixed-case words across the hash's blocks, at every offset.
        for pad in 0..20 {
            let word = "Some_Long_Column_Name_Ã_Written_In_Mixed_Case";
            let lead = "A".repeat(pad + 1);
            let d = format!("SELECT {lead}, {word}, {word}, {word} FROM {word}");
            assert_eq!(key(&d), key_of_text(&text(&d, usize::MAX)), "pad {pad}");
            assert_eq!(key(&d), key(&d.to_lowercase().replace('ã', "Ã")));
        }
    }

    #[test]
    fn different_statements_differ() {
        assert_ne!(key("SELECT a FROM t"), key("SELECT b FROM t"));
        assert_ne!(key("SELECT 1 FROM t1"), key("SELECT 1 FROM t2"));
        assert_ne!(key("DELETE FROM t"), key("SELECT FROM t"));
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        let t = text("SELECT 'é', ééééé FROM t", 12);
        assert!(t.ends_with("...") && t.len() <= 15, "{t}");
    }

    #[test]
    fn garbage_never_panics() {
        for s in [
            "'",
            "$",
            "$a",
            "$a$ unterminated",
            "E'\\",
            "/* open",
            "\"",
            "1e",
            "..5",
            "é'",
        ] {
            let _ = (key(s), text(s, 5));
        }
    }
}
