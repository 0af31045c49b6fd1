//! TLS for `wss://` and `https://` with rustls (ring provider): a listener
//! with a certificate speaks TLS only; HTTP and WebSocket share the port.
//! ALPN offers `http/1.1`, and `h2` first on a listener with `http2 = true`.

use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// Build an acceptor from PEM files (certificate chain first, then key);
/// `http2`: offer `h2` by ALPN beside `http/1.1`.
pub fn acceptor(cert: &Path, key: &Path, http2: bool) -> anyhow::Result<TlsAcceptor> {
    let certs = {
        let pem = std::fs::read(cert)
            .map_err(|e| anyhow::anyhow!("cannot read TLS certificate {}: {e}", cert.display()))?;
        rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("TLS certificate {}: {e}", cert.display()))?
    };
    if certs.is_empty() {
        anyhow::bail!(
            "TLS certificate {}: no CERTIFICATE block in the file",
            cert.display()
        );
    }
    let key = {
        let pem = std::fs::read(key)
            .map_err(|e| anyhow::anyhow!("cannot read TLS key {}: {e}", key.display()))?;
        rustls_pemfile::private_key(&mut pem.as_slice())
            .map_err(|e| anyhow::anyhow!("TLS key {}: {e}", key.display()))?
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "TLS key {}: no PRIVATE KEY block in the file",
                    key.display()
                )
            })?
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("TLS certificate/key: {e}"))?;
    config.alpn_protocols = match http2 {
        true => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        false => vec![b"http/1.1".to_vec()],
    };
    // Stateless session tickets: any number of clients can resume (a
    // reconnect storm costs a fraction of full handshakes) with no session
    // state kept on the server; the ticket keys rotate every 6 hours.
    config.ticketer = rustls::crypto::ring::Ticketer::new()
        .map_err(|e| anyhow::anyhow!("TLS session tickets: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
