//! Messages pgswitch writes itself (encoded with pgwire's typed messages) and
//! lazy views of the few backend messages it reads.

use bytes::{BufMut, Bytes, BytesMut};
use pgwire::messages::response::{ErrorResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{
    Authentication, BackendKeyData, NegotiateProtocolVersion, ParameterStatus, SecretKey,
};
use pgwire::messages::Message;

/// Severity of an error pgswitch reports itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The statement failed; the connection goes on.
    Error,
    /// The connection is closed after this message.
    Fatal,
}

/// Appends one pgwire message. Our own messages are far below pgwire's caps;
/// a failure would only drop the message, never panic.
fn put<M: Message>(msg: M, buf: &mut BytesMut) {
    if let Err(e) = msg.encode(buf) {
        tracing::error!(error = %e, "could not encode a protocol message");
    }
}

/// ErrorResponse with severity, SQLSTATE, message and an optional hint.
pub fn error_response(
    buf: &mut BytesMut,
    severity: Severity,
    code: &str,
    message: &str,
    hint: Option<&str>,
) {
    let sev = match severity {
        Severity::Error => "ERROR",
        Severity::Fatal => "FATAL",
    };
    let mut fields = vec![
        (b'S', sev.to_owned()),
        (b'V', sev.to_owned()),
        (b'C', code.to_owned()),
        (b'M', message.to_owned()),
    ];
    if let Some(h) = hint {
        fields.push((b'H', h.to_owned()));
    }
    put(ErrorResponse::new(fields), buf);
}

/// NoticeResponse with severity NOTICE.
pub fn notice(buf: &mut BytesMut, code: &str, message: &str) {
    let fields = vec![
        (b'S', "NOTICE".to_owned()),
        (b'V', "NOTICE".to_owned()),
        (b'C', code.to_owned()),
        (b'M', message.to_owned()),
    ];
    put(pgwire::messages::response::NoticeResponse::new(fields), buf);
}

pub fn command_complete(buf: &mut BytesMut, tag: &str) {
    put(
        pgwire::messages::response::CommandComplete::new(tag.to_owned()),
        buf,
    );
}

/// RowDescription of text columns (type `text`, OID 25).
pub fn row_description(buf: &mut BytesMut, columns: &[&str]) {
    row_description_typed(buf, columns, &vec![25; columns.len()]);
}

/// RowDescription with a type OID per column (values in text format).
pub fn row_description_typed(buf: &mut BytesMut, columns: &[&str], types: &[u32]) {
    use pgwire::messages::data::{FieldDescription, RowDescription};
    let size = |oid: u32| match oid {
        23 => 4,
        20 => 8,
        _ => -1,
    };
    let fields = columns
        .iter()
        .zip(types.iter().chain(std::iter::repeat(&25)))
        .map(|(c, &oid)| FieldDescription::new((*c).to_owned(), 0, 0, oid, size(oid), -1, 0))
        .collect();
    put(RowDescription::new(fields), buf);
}

/// DataRow from already-encoded column values (length-prefixed each).
pub fn data_row(buf: &mut BytesMut, values: BytesMut, count: usize) {
    let count = i16::try_from(count).unwrap_or(i16::MAX);
    put(pgwire::messages::data::DataRow::new(values, count), buf);
}

pub fn empty_query(buf: &mut BytesMut) {
    put(pgwire::messages::response::EmptyQueryResponse::new(), buf);
}

pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    let status = match status {
        b'T' => TransactionStatus::Transaction,
        b'E' => TransactionStatus::Error,
        _ => TransactionStatus::Idle,
    };
    put(ReadyForQuery::new(status), buf);
}

pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    put(ParameterStatus::new(name.to_owned(), value.to_owned()), buf);
}

pub fn backend_key_data(buf: &mut BytesMut, pid: i32, secret: i32) {
    put(BackendKeyData::new(pid, SecretKey::I32(secret)), buf);
}

pub fn auth_ok(buf: &mut BytesMut) {
    put(Authentication::Ok, buf);
}

/// AuthenticationSASL; with `plus`, SCRAM-SHA-256-PLUS is offered first
/// (a TLS client that can bind its channel).
pub fn auth_sasl(buf: &mut BytesMut, plus: bool) {
    let mut mechanisms = Vec::with_capacity(2);
    if plus {
        mechanisms.push("SCRAM-SHA-256-PLUS".to_owned());
    }
    mechanisms.push("SCRAM-SHA-256".to_owned());
    put(Authentication::SASL(mechanisms), buf);
}

pub fn auth_sasl_continue(buf: &mut BytesMut, data: Vec<u8>) {
    put(Authentication::SASLContinue(Bytes::from(data)), buf);
}

pub fn auth_sasl_final(buf: &mut BytesMut, data: Vec<u8>) {
    put(Authentication::SASLFinal(Bytes::from(data)), buf);
}

/// AuthenticationCleartextPassword (the serverless front, inside its TLS).
pub fn auth_cleartext(buf: &mut BytesMut) {
    put(Authentication::CleartextPassword, buf);
}

pub fn auth_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    put(Authentication::MD5Password(salt.to_vec()), buf);
}

/// Tells a client asking for protocol 3.x (x > 0) or `_pq_.` options that we
/// speak 3.0 and which options we ignored.
pub fn negotiate_protocol_version(buf: &mut BytesMut, unsupported: Vec<String>) {
    put(NegotiateProtocolVersion::new(0, unsupported), buf);
}

/// The whole frame of a simple Query message.
pub fn query(buf: &mut BytesMut, sql: &str) {
    buf.put_u8(b'Q');
    buf.put_i32((4 + sql.len() + 1) as i32);
    buf.put_slice(sql.as_bytes());
    buf.put_u8(0);
}

/// Fields of an ErrorResponse or NoticeResponse body: `(code, value)*\0`.
/// Tolerates truncation; never panics on bad input.
pub fn error_fields(body: &[u8]) -> impl Iterator<Item = (u8, &str)> {
    let mut rest = body;
    std::iter::from_fn(move || {
        let (&code, tail) = rest.split_first()?;
        if code == 0 {
            return None;
        }
        let end = tail.iter().position(|&b| b == 0)?;
        let value = std::str::from_utf8(&tail[..end]).unwrap_or("");
        rest = &tail[end + 1..];
        Some((code, value))
    })
}

/// A backend error, kept for reporting: SQLSTATE, severity and message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackendError {
    pub severity: String,
    pub code: String,
    pub message: String,
}

impl BackendError {
    pub fn parse(body: &[u8]) -> Self {
        let mut e = BackendError::default();
        for (code, value) in error_fields(body) {
            match code {
                b'V' => e.severity = value.to_owned(),
                b'S' if e.severity.is_empty() => e.severity = value.to_owned(),
                b'C' => e.code = value.to_owned(),
                b'M' => e.message = value.to_owned(),
                _ => {}
            }
        }
        e
    }
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)
    }
}

/// `name\0value\0` body of ParameterStatus.
/// The text columns of a DataRow body (NULL, or a malformed row, as None).
pub fn parse_data_row(body: &[u8]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let Some(count) = body.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]])) else {
        return out;
    };
    let mut pos = 2;
    for _ in 0..count.max(0) {
        let Some(len) = body
            .get(pos..pos + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        else {
            break;
        };
        pos += 4;
        if len < 0 {
            out.push(None);
            continue;
        }
        let end = pos + len as usize;
        out.push(
            body.get(pos..end)
                .map(|v| String::from_utf8_lossy(v).into_owned()),
        );
        pos = end;
    }
    out
}

pub fn parse_parameter_status(body: &[u8]) -> Option<(&str, &str)> {
    let mut parts = body.split(|&b| b == 0);
    let name = std::str::from_utf8(parts.next()?).ok()?;
    let value = std::str::from_utf8(parts.next()?).ok()?;
    Some((name, value))
}

/// `pid: i32, secret: i32` body of BackendKeyData (protocol 3.0).
pub fn parse_backend_key_data(body: &[u8]) -> Option<(i32, i32)> {
    let pid = i32::from_be_bytes(body.get(0..4)?.try_into().ok()?);
    let secret = i32::from_be_bytes(body.get(4..8)?.try_into().ok()?);
    Some((pid, secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::whole_messages;

    #[test]
    fn error_round_trip() {
        let mut buf = BytesMut::new();
        error_response(
            &mut buf,
            Severity::Fatal,
            "28P01",
            "password authentication failed",
            None,
        );
        let (tag, body) = whole_messages(&buf).next().unwrap();
        assert_eq!(tag, b'E');
        let e = BackendError::parse(body);
        assert_eq!((e.severity.as_str(), e.code.as_str()), ("FATAL", "28P01"));
    }

    #[test]
    fn error_fields_survive_truncation() {
        let fields: Vec<_> = error_fields(b"SERROR\0C4200").collect();
        assert_eq!(fields, vec![(b'S', "ERROR")]);
    }

    #[test]
    fn parameter_status_and_key_data() {
        assert_eq!(
            parse_parameter_status(b"TimeZone\0UTC\0"),
            Some(("TimeZone", "UTC"))
        );
        assert_eq!(parse_parameter_status(b"x"), None);
        let mut buf = BytesMut::new();
        backend_key_data(&mut buf, 5, -3);
        let (_, body) = whole_messages(&buf).next().unwrap();
        assert_eq!(parse_backend_key_data(body), Some((5, -3)));
        assert_eq!(parse_backend_key_data(b"abc"), None);
    }
}
