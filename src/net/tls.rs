//! TLS settings, built once when the configuration loads: towards servers
//! (libpq's `sslmode` family, one [`ServerTls`] per server URL), and
//! towards clients (the certificate pgswitch presents, [`ClientTls`]).
//! rustls with the ring provider; no OpenSSL.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// The ALPN name of the Postgres protocol (PostgreSQL 17).
pub const ALPN: &[u8] = b"postgresql";

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// libpq's `sslmode`, with libpq's meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// Plain first; TLS if the server refuses the plain login.
    Allow,
    /// TLS if the server has it, else plain (libpq's default).
    #[default]
    Prefer,
    /// TLS or nothing; the certificate is checked only with `sslrootcert`.
    Require,
    /// TLS, certificate signed by a trusted CA.
    VerifyCa,
    /// TLS, trusted CA, and the certificate names the host.
    VerifyFull,
}

impl SslMode {
    pub fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// TLS is a must: a server without it is an error.
    pub fn requires_tls(self) -> bool {
        self >= SslMode::Require
    }
}

/// libpq's `channel_binding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelBinding {
    Disable,
    #[default]
    Prefer,
    Require,
}

/// Where trusted CAs come from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    File(PathBuf),
    /// The operating system's trust store (`sslrootcert=system`).
    System,
}

/// The TLS options of one server URL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SslOptions {
    pub mode: SslMode,
    pub root: Option<RootCerts>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Send the host name as SNI (libpq's `sslsni`, on by default).
    pub sni: bool,
    pub channel_binding: ChannelBinding,
}

/// TLS towards one server: its options and the rustls configuration built
/// from them (none with `sslmode=disable`).
#[derive(Clone)]
pub struct ServerTls {
    pub options: SslOptions,
    pub config: Option<Arc<rustls::ClientConfig>>,
    /// A hash of the files the options name, as read (see
    /// `ServerAddr::identity`).
    pub digest: u64,
}

impl PartialEq for ServerTls {
    fn eq(&self, other: &Self) -> bool {
        self.options == other.options
    }
}

impl Eq for ServerTls {}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.options.fmt(f)
    }
}

impl Default for ServerTls {
    fn default() -> Self {
        // Built from defaults, which read no file: cannot fail.
        ServerTls::new(SslOptions {
            sni: true,
            ..SslOptions::default()
        })
        .unwrap_or(ServerTls {
            options: SslOptions::default(),
            config: None,
            digest: 0,
        })
    }
}

/// A problem with TLS settings: what is wrong, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    pub problem: String,
    pub fix: String,
}

fn setting(problem: impl Into<String>, fix: impl Into<String>) -> SettingError {
    SettingError {
        problem: problem.into(),
        fix: fix.into(),
    }
}

impl ServerTls {
    /// Reads the files the options name and builds the configuration.
    pub fn new(options: SslOptions) -> Result<ServerTls, SettingError> {
        if options.mode == SslMode::Disable {
            return Ok(ServerTls {
                options,
                config: None,
                digest: 0,
            });
        }
        let digest = files_digest(&options);
        let verify = match (&options.root, options.mode) {
            (None, SslMode::VerifyCa | SslMode::VerifyFull) => {
                return Err(setting(
                    format!(
                        "sslmode={} needs sslrootcert to check the server's certificate",
                        mode_name(options.mode)
                    ),
                    "add sslrootcert=/path/to/ca.crt (or sslrootcert=system for the OS trust store) to the URL",
                ))
            }
            (None, _) => None,
            (Some(root), mode) => {
                let roots = Arc::new(load_roots(root)?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider())
                    .build()
                    .map_err(|e| setting(format!("sslrootcert: {e}"), "give a file of PEM CA certificates"))?;
                // libpq: a root certificate given with require checks the
                // chain as verify-ca does; sslrootcert=system implies
                // verify-full.
                let names = mode == SslMode::VerifyFull || root == &RootCerts::System;
                Some((webpki, names))
            }
        };
        let verifier: Arc<dyn ServerCertVerifier> = match verify {
            Some((webpki, true)) => webpki,
            Some((webpki, false)) => Arc::new(AnyName(webpki)),
            None => Arc::new(Unchecked(provider())),
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| setting(e.to_string(), "this is a bug in pgswitch; please report it"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match (&options.cert, &options.key) {
            (Some(cert), Some(key)) => {
                let chain = load_certs(cert, "sslcert")?;
                let key = load_key(key, "sslkey")?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    setting(
                        format!("sslcert/sslkey: {e}"),
                        "give the client certificate and its own private key",
                    )
                })?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(setting(
                    "sslcert and sslkey must be given together",
                    "add the missing one to the URL, or remove both",
                ))
            }
        };
        config.enable_sni = options.sni;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(ServerTls {
            options,
            config: Some(Arc::new(config)),
            digest,
        })
    }
}

/// A hash of the contents of the files `options` names (unreadable ones
/// count as empty: loading them reports the error).
fn files_digest(options: &SslOptions) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let root = match &options.root {
        Some(RootCerts::File(p)) => Some(p),
        _ => None,
    };
    for path in [root, options.cert.as_ref(), options.key.as_ref()]
        .into_iter()
        .flatten()
    {
        std::fs::read(path).unwrap_or_default().hash(&mut h);
    }
    h.finish()
}

pub fn mode_name(m: SslMode) -> &'static str {
    match m {
        SslMode::Disable => "disable",
        SslMode::Allow => "allow",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    }
}

fn load_roots(root: &RootCerts) -> Result<rustls::RootCertStore, SettingError> {
    let mut store = rustls::RootCertStore::empty();
    match root {
        RootCerts::File(path) => {
            for cert in load_certs(path, "sslrootcert")? {
                store.add(cert).map_err(|e| {
                    setting(
                        format!("sslrootcert {}: {e}", path.display()),
                        "give a file of PEM CA certificates",
                    )
                })?;
            }
        }
        RootCerts::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(setting(
                    "sslrootcert=system: the operating system's trust store has no certificates",
                    "install the ca-certificates package, or give sslrootcert=/path/to/ca.crt",
                ));
            }
        }
    }
    Ok(store)
}

/// Every certificate of a PEM file; none is an error.
pub fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, SettingError> {
    let fix = format!("{what} must name a readable PEM file of certificates");
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| setting(format!("{what} {}: {}", path.display(), pem_error(e)), &fix))?
        .collect::<Result<_, _>>()
        .map_err(|e| setting(format!("{what} {}: {}", path.display(), pem_error(e)), &fix))?;
    if certs.is_empty() {
        return Err(setting(
            format!("{what} {}: no certificate in the file", path.display()),
            fix,
        ));
    }
    Ok(certs)
}

pub fn load_key(path: &Path, what: &str) -> Result<PrivateKeyDer<'static>, SettingError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        setting(
            format!("{what} {}: {}", path.display(), pem_error(e)),
            format!("{what} must name a readable PEM private key (PKCS#8, PKCS#1 or SEC1)"),
        )
    })
}

fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => e.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item of the right kind".into(),
        other => format!("{other:?}"),
    }
}

/// `verify-ca`: a trusted chain, whatever name the certificate carries.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a root certificate: encrypted, the
/// certificate unchecked (as libpq), the handshake's signatures checked.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The certificate pgswitch presents to clients, and its channel-binding
/// hash (`tls-server-end-point`).
pub struct ClientTls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// The same certificate for the serverless front (ALPN `http/1.1`).
    pub http: tokio_rustls::TlsAcceptor,
    pub endpoint: Vec<u8>,
    /// The files it came from, to tell whether a reload changed them.
    pub files: (PathBuf, PathBuf),
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientTls({})", self.files.0.display())
    }
}

impl ClientTls {
    pub fn load(cert: &Path, key: &Path) -> Result<ClientTls, SettingError> {
        let chain = load_certs(cert, "tls_cert_file")?;
        let endpoint = end_point_hash(&chain[0]);
        let key_der = load_key(key, "tls_key_file")?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| setting(e.to_string(), "this is a bug in pgswitch; please report it"))?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| {
                setting(
                    format!("tls_cert_file/tls_key_file: {e}"),
                    "give the certificate and its own private key, both PEM",
                )
            })?;
        let mut http = config.clone();
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(ClientTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            http: tokio_rustls::TlsAcceptor::from(Arc::new(http)),
            endpoint,
            files: (cert.to_path_buf(), key.to_path_buf()),
        })
    }
}

/// RFC 5929 `tls-server-end-point`: the certificate hashed with its
/// signature's hash, SHA-256 when that is MD5 or SHA-1 (or unknown).
pub fn end_point_hash(cert: &[u8]) -> Vec<u8> {
    // DER of the signature algorithm OIDs hashed with SHA-384 and SHA-512
    // (RSA PKCS#1 and ECDSA).
    const SHA384: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c],
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
    ];
    const SHA512: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d],
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
    ];
    let has = |oids: [&[u8]; 2]| {
        oids.iter()
            .any(|oid| cert.windows(oid.len()).any(|w| w == *oid))
    };
    if has(SHA512) {
        Sha512::digest(cert).to_vec()
    } else if has(SHA384) {
        Sha384::digest(cert).to_vec()
    } else {
        Sha256::digest(cert).to_vec()
    }
}

/// A TLS failure in words an operator can act on.
pub fn describe(e: &std::io::Error) -> String {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return e.to_string();
    };
    match tls {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                "the server's certificate is not signed by a CA in sslrootcert (unknown issuer)".into()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "the server's certificate does not name the host pgswitch connected to (name mismatch); use the name it was issued for, or sslmode=verify-ca".into()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet (check the clocks)".into()
            }
            other => format!("the server's certificate was refused: {other:?}"),
        },
        other => other.to_string(),
    }
}
