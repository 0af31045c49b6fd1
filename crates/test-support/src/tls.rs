//! A private PKI for `wss://` tests, generated with rcgen: a CA
//! (`ca.pem`), a server certificate for `localhost` and `127.0.0.1`
//! (`server.pem`, `server.key`) and a client certificate for mutual TLS
//! (`client.pem`, `client.key`), in a temporary directory removed on drop.

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use std::path::{Path, PathBuf};

/// The files of a private CA and the certificates it issued.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// A new CA with its server and client certificates.
    pub fn new() -> Pki {
        let dir = crate::temp_path("pki");
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issue = |names: Vec<String>, stem: &str| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, &ca, &ca_key)
                .unwrap();
            std::fs::write(dir.join(format!("{stem}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
        };
        issue(vec!["localhost".into(), "127.0.0.1".into()], "server");
        issue(vec!["client.test".into()], "client");
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki { dir }
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One of its files (`ca.pem`, `server.pem`, `server.key`,
    /// `client.pem`, `client.key`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A TLS acceptor with the server certificate.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tether::tls::acceptor_from_pem(&self.path("server.pem"), &self.path("server.key")).unwrap()
    }
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
