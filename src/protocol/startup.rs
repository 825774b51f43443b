//! The untagged first packet a client sends: `len: i32, code: i32, payload`.
//!
//! Postgres caps this packet at 10,000 bytes (`MAX_STARTUP_PACKET_LENGTH`);
//! pgswitch uses the same cap and checks it before reading the payload.

use bytes::{Buf, BytesMut};

/// Largest startup packet accepted, as in Postgres.
pub const MAX_STARTUP_LEN: usize = 10_000;
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;
/// A CancelRequest one pgswitch forwards to its peers (`peers`): the same
/// layout under a code of pgswitch's own, so that a peer acts on it only
/// for its own clients and never forwards it again.
pub const PEER_CANCEL_REQUEST: i32 = 80_877_701;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    /// `forwarded`: from a peer pgswitch (`PEER_CANCEL_REQUEST`).
    CancelRequest {
        pid: i32,
        secret: Vec<u8>,
        forwarded: bool,
    },
    Startup(StartupMessage),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage {
    pub minor: u16,
    pub params: Vec<(String, String)>,
}

impl StartupMessage {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartupError {
    #[error("invalid length of startup packet ({0} bytes)")]
    BadLength(i64),
    #[error("unsupported frontend protocol {0}.{1}: server supports 3.0")]
    UnsupportedProtocol(u16, u16),
    #[error("invalid startup packet layout: {0}")]
    Malformed(&'static str),
}

/// Parses one startup packet from the front of `buf`, or `Ok(None)` if it is
/// not complete yet.
pub fn parse(buf: &mut BytesMut) -> Result<Option<StartupPacket>, StartupError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 8 || len as usize > MAX_STARTUP_LEN {
        return Err(StartupError::BadLength(len.into()));
    }
    let len = len as usize;
    if buf.len() < len {
        return Ok(None);
    }
    let mut packet = buf.split_to(len);
    packet.advance(4);
    let code = packet.get_i32();
    let parsed = match code {
        SSL_REQUEST => StartupPacket::SslRequest,
        GSSENC_REQUEST => StartupPacket::GssEncRequest,
        CANCEL_REQUEST | PEER_CANCEL_REQUEST => {
            // 3.0 sends a 4-byte key; 3.2 allows up to 256 bytes.
            if packet.len() < 8 || packet.len() > 4 + 256 {
                return Err(StartupError::Malformed("cancel request key length"));
            }
            let pid = packet.get_i32();
            StartupPacket::CancelRequest {
                pid,
                secret: packet.to_vec(),
                forwarded: code == PEER_CANCEL_REQUEST,
            }
        }
        _ => {
            let (major, minor) = ((code >> 16) as u16, (code & 0xffff) as u16);
            if major != 3 {
                return Err(StartupError::UnsupportedProtocol(major, minor));
            }
            StartupPacket::Startup(StartupMessage {
                minor,
                params: parse_params(&packet)?,
            })
        }
    };
    Ok(Some(parsed))
}

/// `name\0value\0 ... \0`: a list of C-string pairs ending in an empty name.
fn parse_params(mut body: &[u8]) -> Result<Vec<(String, String)>, StartupError> {
    let mut params = Vec::new();
    loop {
        let name = take_cstr(&mut body)?;
        if name.is_empty() {
            break;
        }
        let value = take_cstr(&mut body)?;
        params.push((name, value));
    }
    if !body.is_empty() {
        return Err(StartupError::Malformed(
            "bytes after the parameter list terminator",
        ));
    }
    Ok(params)
}

fn take_cstr(body: &mut &[u8]) -> Result<String, StartupError> {
    let end = body
        .iter()
        .position(|&b| b == 0)
        .ok_or(StartupError::Malformed("parameter list is not terminated"))?;
    let s = std::str::from_utf8(&body[..end])
        .map_err(|_| StartupError::Malformed("parameter is not valid UTF-8"))?
        .to_owned();
    *body = &body[end + 1..];
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: i32, payload: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.extend_from_slice(&(payload.len() as i32 + 8).to_be_bytes());
        b.extend_from_slice(&code.to_be_bytes());
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn parses_startup_params() {
        let mut b = packet(196_608, b"user\0app\0database\0db\0\0");
        let Some(StartupPacket::Startup(m)) = parse(&mut b).unwrap() else {
            panic!()
        };
        assert_eq!(m.param("user"), Some("app"));
        assert_eq!(m.param("database"), Some("db"));
        assert!(b.is_empty());
    }

    #[test]
    fn ssl_and_cancel() {
        assert_eq!(
            parse(&mut packet(SSL_REQUEST, b"")).unwrap(),
            Some(StartupPacket::SslRequest)
        );
        let mut p = Vec::new();
        p.extend_from_slice(&7i32.to_be_bytes());
        p.extend_from_slice(&9i32.to_be_bytes());
        assert_eq!(
            parse(&mut packet(CANCEL_REQUEST, &p)).unwrap(),
            Some(StartupPacket::CancelRequest {
                pid: 7,
                secret: 9i32.to_be_bytes().to_vec(),
                forwarded: false,
            })
        );
        assert_eq!(
            parse(&mut packet(PEER_CANCEL_REQUEST, &p)).unwrap(),
            Some(StartupPacket::CancelRequest {
                pid: 7,
                secret: 9i32.to_be_bytes().to_vec(),
                forwarded: true,
            })
        );
    }

    #[test]
    fn incomplete_waits() {
        let full = packet(196_608, b"user\0app\0\0");
        let mut b = BytesMut::from(&full[..6]);
        assert_eq!(parse(&mut b).unwrap(), None);
    }

    #[test]
    fn rejects_garbage() {
        let mut huge = BytesMut::from(&(1_000_000i32).to_be_bytes()[..]);
        assert!(matches!(parse(&mut huge), Err(StartupError::BadLength(_))));
        assert!(matches!(
            parse(&mut packet(0x0002_0000, b"\0")),
            Err(StartupError::UnsupportedProtocol(2, 0))
        ));
        assert!(matches!(
            parse(&mut packet(196_608, b"user\0app")),
            Err(StartupError::Malformed(_))
        ));
        assert!(matches!(
            parse(&mut packet(196_608, b"\xff\0x\0\0")),
            Err(StartupError::Malformed(_))
        ));
        let mut http = BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]);
        assert!(parse(&mut http).is_err());
    }
}
