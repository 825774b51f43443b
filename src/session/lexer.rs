//! A small SQL lexer for the session-state rules (`effects`): it splits a
//! text into statements at top-level `;` and yields each statement's tokens,
//! skipping whitespace and comments (`-- ...`, nested `/* ... */`), with
//! string literals (`'...'`, `E'...'`, `$tag$...$tag$`) and quoted names
//! (`"..."`) as single tokens, so that words inside them are never taken
//! for keywords. One pass over the bytes, no allocation.
//!
//! The lexer assumes `standard_conforming_strings = on` (Postgres's default
//! since 9.1); `effects` pins a client that turns it off.

/// One token of a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    /// An unquoted word: keyword or name, as written (compare with
    /// [`Token::is`]).
    Word(&'a str),
    /// A quoted name, without its quotes (doubled quotes left as written).
    Quoted(&'a str),
    /// A string literal's contents, without quotes or escapes resolved.
    Str(&'a str),
    /// `$1`, `$2`, ...
    Param,
    /// A number.
    Number,
    /// Any other byte: operators and punctuation.
    Punct(u8),
    /// A top-level `;`: the end of a statement.
    End,
}

impl Token<'_> {
    /// Whether this is the unquoted word `keyword` (ASCII lowercase), in any
    /// case.
    pub fn is(&self, keyword: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(keyword))
    }
}

/// The tokens of a SQL text, statement ends included.
#[derive(Debug, Clone)]
pub struct Lexer<'a> {
    sql: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(sql: &'a str) -> Self {
        Lexer { sql, pos: 0 }
    }

    /// The next statement's tokens (up to, not including, its `;`), or
    /// `None` at the end of the text. Empty statements are skipped.
    pub fn statement(&mut self) -> Option<Statement<'a>> {
        loop {
            let start = self.clone();
            match self.next()? {
                Token::End => continue,
                _ => {
                    // Move past this statement for the next call.
                    while !matches!(self.next(), None | Some(Token::End)) {}
                    return Some(Statement {
                        lexer: start,
                        done: false,
                    });
                }
            }
        }
    }

    /// The next statement's tokens, or `None` at the end of the text,
    /// without moving past it: the caller goes on from where it stops
    /// reading (see [`Statement::finish`]), so the text is lexed once.
    pub fn starting(&mut self) -> Option<Statement<'a>> {
        loop {
            let start = self.clone();
            match self.next()? {
                Token::End => continue,
                _ => {
                    return Some(Statement {
                        lexer: start,
                        done: false,
                    })
                }
            }
        }
    }

    fn skip_space_and_comments(&mut self) {
        let b = self.sql.as_bytes();
        loop {
            while self.pos < b.len() && b[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
            if b[self.pos..].starts_with(b"--") {
                // To the end of the line, which for Postgres is a
                // carriage return too.
                self.pos += b[self.pos..]
                    .iter()
                    .position(|&c| c == b'\n' || c == b'\r')
                    .unwrap_or(b.len() - self.pos);
            } else if b[self.pos..].starts_with(b"/*") {
                let mut depth = 0usize;
                while self.pos < b.len() {
                    if b[self.pos..].starts_with(b"/*") {
                        depth += 1;
                        self.pos += 2;
                    } else if b[self.pos..].starts_with(b"*/") {
                        depth -= 1;
                        self.pos += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        self.pos += 1;
                    }
                }
            } else {
                return;
            }
        }
    }

    /// A literal quoted with `q` from `self.pos` (at the opening quote):
    /// its contents; a doubled quote stands for one, and with `backslash`
    /// (`E'...'`) a backslash escapes the next byte. Unterminated: to the end.
    fn quoted(&mut self, q: u8, backslash: bool) -> &'a str {
        let b = self.sql.as_bytes();
        let start = self.pos + 1;
        let mut i = start;
        while i < b.len() {
            if backslash && b[i] == b'\\' {
                i += 2;
            } else if b[i] == q {
                if b.get(i + 1) == Some(&q) {
                    i += 2;
                } else {
                    self.pos = i + 1;
                    return &self.sql[start..i];
                }
            } else {
                i += 1;
            }
        }
        self.pos = b.len();
        self.sql.get(start..).unwrap_or_default()
    }

    /// `$tag$ ... $tag$` from `self.pos`, if a dollar quote starts there.
    fn dollar_quoted(&mut self) -> Option<&'a str> {
        let b = self.sql.as_bytes();
        let tag_len = b[self.pos + 1..]
            .iter()
            .position(|&c| !is_word_byte(c) || c == b'$')?;
        let tag_end = self.pos + 1 + tag_len;
        if b.get(tag_end) != Some(&b'$') || b.get(self.pos + 1).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        let tag = &self.sql[self.pos..=tag_end];
        let body = tag_end + 1;
        match self.sql[body..].find(tag) {
            Some(n) => {
                self.pos = body + n + tag.len();
                Some(&self.sql[body..body + n])
            }
            None => {
                self.pos = b.len();
                Some(&self.sql[body..])
            }
        }
    }
}

fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_word_byte(c: u8) -> bool {
    is_word_start(c) || c.is_ascii_digit() || c == b'$'
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        self.skip_space_and_comments();
        let b = self.sql.as_bytes();
        let c = *b.get(self.pos)?;
        let token = match c {
            b';' => {
                self.pos += 1;
                Token::End
            }
            b'\'' => Token::Str(self.quoted(b'\'', false)),
            b'"' => Token::Quoted(self.quoted(b'"', false)),
            b'$' if b.get(self.pos + 1).is_some_and(u8::is_ascii_digit) => {
                self.pos += 1;
                while b.get(self.pos).is_some_and(u8::is_ascii_digit) {
                    self.pos += 1;
                }
                Token::Param
            }
            b'$' => match self.dollar_quoted() {
                Some(body) => Token::Str(body),
                None => {
                    self.pos += 1;
                    Token::Punct(b'$')
                }
            },
            c if is_word_start(c) => {
                // E'...' takes backslash escapes.
                if (c == b'e' || c == b'E') && b.get(self.pos + 1) == Some(&b'\'') {
                    self.pos += 1;
                    return Some(Token::Str(self.quoted(b'\'', true)));
                }
                let start = self.pos;
                while b.get(self.pos).is_some_and(|&c| is_word_byte(c)) {
                    self.pos += 1;
                }
                // Multi-byte UTF-8 sequences are all >= 0x80, so the cut is
                // on a character boundary.
                Token::Word(&self.sql[start..self.pos])
            }
            c if c.is_ascii_digit() => {
                while b
                    .get(self.pos)
                    .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_')
                {
                    self.pos += 1;
                }
                Token::Number
            }
            c => {
                self.pos += 1;
                Token::Punct(c)
            }
        };
        Some(token)
    }
}

/// One statement's tokens.
#[derive(Debug, Clone)]
pub struct Statement<'a> {
    lexer: Lexer<'a>,
    /// Its `;` (or the end of the text) was reached.
    done: bool,
}

impl<'a> Statement<'a> {
    /// The text after this statement (and its `;`), its remaining tokens
    /// read past.
    pub fn finish(mut self) -> Lexer<'a> {
        while self.next().is_some() {}
        self.lexer
    }
}

impl<'a> Iterator for Statement<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        if self.done {
            return None;
        }
        match self.lexer.next() {
            None | Some(Token::End) => {
                self.done = true;
                None
            }
            t => t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements(sql: &str) -> Vec<Vec<Token<'_>>> {
        let mut l = Lexer::new(sql);
        std::iter::from_fn(|| l.statement().map(|s| s.collect())).collect()
    }

    #[test]
    fn comments_and_space_are_skipped() {
        let s = statements("/* a /* nested */ comment */ -- line\n  SELECT 1");
        assert_eq!(s, [vec![Token::Word("SELECT"), Token::Number]]);
        assert_eq!(statements("-- only a comment"), Vec::<Vec<Token>>::new());
        // Postgres ends a line comment at a carriage return too.
        let s = statements("-- line\rSET x = 1");
        assert_eq!(s[0][0], Token::Word("SET"));
    }

    #[test]
    fn statements_split_at_top_level_semicolons_only() {
        let s = statements("select ';' ; ;listen \"a;b\"; do $x$ begin; end $x$");
        assert_eq!(
            s,
            [
                vec![Token::Word("select"), Token::Str(";")],
                vec![Token::Word("listen"), Token::Quoted("a;b")],
                vec![Token::Word("do"), Token::Str(" begin; end ")],
            ]
        );
    }

    #[test]
    fn literals_hide_their_words() {
        let s = statements(r"SELECT E'it\'s; listen', 'a''b', $$x$$, $1, a$b");
        assert_eq!(
            s,
            [vec![
                Token::Word("SELECT"),
                Token::Str(r"it\'s; listen"),
                Token::Punct(b','),
                Token::Str("a''b"),
                Token::Punct(b','),
                Token::Str("x"),
                Token::Punct(b','),
                Token::Param,
                Token::Punct(b','),
                Token::Word("a$b"),
            ]]
        );
    }

    #[test]
    fn statements_read_once_go_on_where_they_stop() {
        let sql = "select 1; ; listen \"a;b\"; do $x$ begin; end $x$";
        let mut l = Lexer::new(sql);
        let mut once = Vec::new();
        while let Some(mut st) = l.starting() {
            // Read one token only; `finish` moves past the rest.
            once.push(st.next());
            l = st.finish();
        }
        assert_eq!(
            once,
            [
                Some(Token::Word("select")),
                Some(Token::Word("listen")),
                Some(Token::Word("do"))
            ]
        );
    }

    #[test]
    fn unterminated_input_ends_cleanly() {
        for sql in ["'abc", "/* abc", "$q$ abc", "\"abc", "E'\\", "$", "$$"] {
            let _ = statements(sql);
        }
        assert!(Token::Word("Listen").is("listen"));
    }
}
