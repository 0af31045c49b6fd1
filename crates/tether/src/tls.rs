//! TLS for `wss://` (client) and for servers that terminate TLS themselves.
//!
//! Built on rustls with the `ring` crypto provider (pure Rust + a little
//! assembly, no cmake/C toolchain needed, unlike aws-lc-rs). The provider is
//! passed explicitly to every config, so nothing depends on a process-wide
//! default being installed.
//!
//! What a client trusts, by default, is what the operating system trusts
//! (`rustls-native-certs`: `/etc/ssl/certs`, `SSL_CERT_FILE`/`SSL_CERT_DIR`);
//! if the system store is empty or unreadable (minimal containers), the
//! bundled Mozilla roots (`webpki-roots`) are used instead, so `wss://` to a
//! public server works anywhere. [`TlsOptions`] adds private CAs, a client
//! certificate, an SNI override, or (loudly named) turns verification off.
//!
//! Every failed TLS handshake becomes [`Error::Tls`] with a sentence that
//! names the cause and, where there is one, the fix
//! (`describe_handshake_error`); files and settings that cannot be used are
//! [`Error::Config`], naming the file.

use crate::error::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Which root certificates a client trusts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Roots {
    /// The operating system's store; the bundled Mozilla roots if that is
    /// empty. The default.
    #[default]
    System,
    /// Only the bundled Mozilla roots (`webpki-roots`): reproducible, ignores
    /// local changes to the system store.
    Mozilla,
    /// None: only the CA files given with [`TlsOptions::ca_file`].
    None,
}

/// How a client sets up TLS for `wss://`.
///
/// ```no_run
/// # async fn run() -> tether::Result<()> {
/// use tether::tls::TlsOptions;
/// let tls = TlsOptions::new().ca_file("ca.pem").client_cert("me.pem", "me.key");
/// let (ws, _) = tether::ClientBuilder::new("wss://internal.example:8443/feed")
///     .tls(tls)
///     .connect()
///     .await?;
/// # drop(ws); Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    roots: Roots,
    ca_files: Vec<PathBuf>,
    client_cert: Option<(PathBuf, PathBuf)>,
    server_name: Option<String>,
    insecure: bool,
}

impl TlsOptions {
    /// System roots, no client certificate, SNI from the URL's host.
    pub fn new() -> Self {
        Self::default()
    }

    /// Choose the root store.
    pub fn roots(mut self, roots: Roots) -> Self {
        self.roots = roots;
        self
    }

    /// Also trust the CA certificate(s) in this PEM file (call again for more).
    /// A server whose own certificate is in the file (self-signed, e.g. from
    /// `openssl req -x509`) is trusted too, for the names in it.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_files.push(path.into());
        self
    }

    /// Present this client certificate chain (PEM) and private key (PEM:
    /// PKCS#8, PKCS#1 or SEC1) when the server asks for one.
    pub fn client_cert(mut self, chain: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some((chain.into(), key.into()));
        self
    }

    /// Send this name in SNI and verify the certificate against it, instead
    /// of the URL's host (e.g. connecting to an IP address that serves a
    /// named certificate).
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// **Dangerous**: accept any server certificate, for any name. The
    /// connection is encrypted but not authenticated, so anyone on the path
    /// can read and change it. For testing against self-signed servers only.
    pub fn danger_accept_invalid_certs(mut self, yes: bool) -> Self {
        self.insecure = yes;
        self
    }

    /// The name to verify and send in SNI for a URL host.
    pub(crate) fn server_name_for(&self, host: &str) -> Result<ServerName<'static>> {
        let name = self.server_name.as_deref().unwrap_or(host);
        ServerName::try_from(name.to_owned())
            .map_err(|_| Error::Config(format!("`{name}` is not a valid TLS server name")))
    }

    /// Build the rustls client configuration (reads the files now).
    pub fn build(&self) -> Result<Arc<ClientConfig>> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("cannot set up TLS: {e}")))?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        } else {
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(self.root_store()?), provider)
                    .build()
                    .map_err(|e| Error::Config(format!("cannot set up certificate checks: {e}")))?;
            let pinned = self.ca_file_certs()?;
            if pinned.is_empty() {
                builder.with_webpki_verifier(webpki)
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(PinnedOrWebpki { webpki, pinned }))
            }
        };
        let mut config = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder
                .with_client_auth_cert(load_certs(chain)?, load_key(key)?)
                .map_err(|e| {
                    Error::Config(format!(
                        "client certificate {} does not match key {}: {e}",
                        chain.display(),
                        key.display()
                    ))
                })?,
        };
        // WebSocket runs over HTTP/1.1 (RFC 8441's HTTP/2 variant aside).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Every certificate of the CA files.
    fn ca_file_certs(&self) -> Result<Vec<CertificateDer<'static>>> {
        let mut all = Vec::new();
        for path in &self.ca_files {
            all.extend(load_certs(path)?);
        }
        Ok(all)
    }

    fn root_store(&self) -> Result<RootCertStore> {
        let mut store = RootCertStore::empty();
        match self.roots {
            Roots::System => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _ignored) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    tracing::debug!(
                        errors = ?found.errors,
                        "no usable system root certificates; using the bundled Mozilla roots"
                    );
                    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                }
            }
            Roots::Mozilla => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Roots::None => {}
        }
        for path in &self.ca_files {
            for cert in load_certs(path)? {
                store.add(cert).map_err(|e| {
                    Error::Config(format!(
                        "{} holds a certificate that cannot be used as a CA: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        if store.is_empty() {
            return Err(Error::Config(
                "no trusted root certificates (add a CA file or use the system roots)".into(),
            ));
        }
        Ok(store)
    }
}

/// The crypto provider every config here uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Read every certificate in a PEM file; an error if there is none.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let data = std::fs::read(path).map_err(|e| {
        Error::Config(format!(
            "cannot read certificate file {}: {e}",
            path.display()
        ))
    })?;
    let certs = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| Error::Config(format!("{} is not valid PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "{} contains no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

/// Read the first private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let data = std::fs::read(path)
        .map_err(|e| Error::Config(format!("cannot read key file {}: {e}", path.display())))?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .map_err(|e| Error::Config(format!("{} is not valid PEM: {e}", path.display())))?
        .ok_or_else(|| {
            Error::Config(format!(
                "{} contains no private key (PKCS#8, PKCS#1 or SEC1 PEM)",
                path.display()
            ))
        })
}

/// A server-side TLS acceptor from a PEM certificate chain and private key,
/// offering `http/1.1` in ALPN. Wrap accepted TCP streams with
/// `acceptor.accept(tcp).await` before [`crate::accept`].
pub fn acceptor_from_pem(cert_chain: &Path, key: &Path) -> Result<TlsAcceptor> {
    let certs = load_certs(cert_chain)?;
    let key_der = load_key(key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("cannot set up TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| {
            Error::Config(format!(
                "certificate {} does not match key {}: {e}",
                cert_chain.display(),
                key.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Turn the I/O error of a failed TLS handshake into a sentence a user can
/// act on.
pub(crate) fn describe_handshake_error(e: io::Error, server_name: &str) -> Error {
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return match e.kind() {
            io::ErrorKind::UnexpectedEof => Error::Tls(format!(
                "{server_name} closed the connection during the TLS handshake \
                 (is it a TLS server? for a plain server use ws://)"
            )),
            kind => Error::Io(io::Error::new(
                kind,
                format!("TLS handshake with {server_name} failed: {e}"),
            )),
        };
    };
    let what = match tls {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => format!(
                "the certificate of {server_name} is not signed by a trusted CA, nor is it \
                 the one in a CA file (self-signed or private CA? trust its CA, or the \
                 server's own certificate, with a CA file / --cacert)"
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("the certificate of {server_name} is not valid for that name ({c:?})")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("the certificate of {server_name} has expired")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!("the certificate of {server_name} is not valid yet (check the clock)")
            }
            CertificateError::Revoked => format!("the certificate of {server_name} is revoked"),
            CertificateError::Other(o) if o.to_string().contains("CaUsedAsEndEntity") => format!(
                "the certificate of {server_name} is a self-signed CA certificate (as \
                 `openssl req -x509` makes) and not the one in a CA file: to trust exactly \
                 this certificate, give it as a CA file / --cacert"
            ),
            other => format!("the certificate of {server_name} was refused: {other:?}"),
        },
        rustls::Error::AlertReceived(alert) => format!(
            "{server_name} aborted the TLS handshake with alert {alert:?} \
             (it may require a client certificate or not support our TLS versions)"
        ),
        rustls::Error::InvalidMessage(m) => {
            format!("{server_name} did not speak TLS ({m:?}); is it a plain ws:// server?")
        }
        other => format!("TLS handshake with {server_name} failed: {other}"),
    };
    Error::Tls(what)
}

/// The usual verification (webpki: chain to a trusted root, name, validity),
/// and a server certificate that is itself in a CA file (a self-signed
/// certificate from `openssl req -x509`, which webpki refuses as
/// `CaUsedAsEndEntity` or `UnknownIssuer`) accepted as pinned: byte for byte
/// the same certificate, still checked against the server name, and the
/// handshake still signed by its key.
#[derive(Debug)]
struct PinnedOrWebpki {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for PinnedOrWebpki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let checked = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match checked {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::Other(_),
            )) if self
                .pinned
                .iter()
                .any(|p| p.as_ref() == end_entity.as_ref()) =>
            {
                let parsed = ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&parsed, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// `danger_accept_invalid_certs`: skips chain and name checks, but still
/// checks that the handshake is signed by the certificate's key.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
