//! HTTPS: TLS settings, certificate loading or generation, and serving a warp filter over TLS.
//!
//! Browsers only grant camera and microphone to pages on `https://` or `localhost`, so a user on
//! the LAN needs TLS. warp 0.4 has no TLS of its own: connections are accepted here, the TLS
//! handshake is done by tokio-rustls (rustls with the aws-lc-rs provider that str0m already
//! links, so no second crypto library ends up in the binary), and each connection is then served
//! like a plain one ([`super::serve()`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// How the server speaks HTTPS (`--tls-cert`/`--tls-key`, `--tls-self-signed`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain HTTP (the default).
    #[default]
    Off,
    /// A certificate chain and its private key, both PEM files.
    PemFiles {
        /// Certificate chain (leaf first), PEM.
        cert: PathBuf,
        /// Private key (PKCS#8, PKCS#1 or SEC1), PEM.
        key: PathBuf,
    },
    /// A certificate generated at start, valid for these DNS names and IP addresses.
    SelfSigned {
        /// Subject alternative names, e.g. `localhost`, `127.0.0.1`, the LAN address.
        names: Vec<String>,
    },
}

impl TlsMode {
    /// Self-signed for `localhost`, `127.0.0.1`, `::1` and `extra` names (e.g. `EXTERNAL_IP`).
    pub fn self_signed_for(extra: impl IntoIterator<Item = String>) -> Self {
        let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        for name in extra {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        TlsMode::SelfSigned { names }
    }

    /// Builds the acceptor for this mode (`None` for plain HTTP). Call it once at start: a
    /// self-signed certificate is generated on each call.
    pub fn acceptor(&self) -> Result<Option<TlsAcceptor>, TlsError> {
        self.identity()?.map(TlsIdentity::acceptor).transpose()
    }

    /// Loads (or generates) the certificate of this mode (`None` for plain HTTP). Call it once
    /// at start: a self-signed certificate is generated on each call.
    pub fn identity(&self) -> Result<Option<TlsIdentity>, TlsError> {
        let identity = match self {
            TlsMode::Off => return Ok(None),
            TlsMode::PemFiles { cert, key } => TlsIdentity::from_pem_files(cert, key)?,
            TlsMode::SelfSigned { names } => {
                let identity = TlsIdentity::self_signed(names)?;
                log::info!(
                    "generated a self-signed TLS certificate for {}; browsers will ask to accept it once",
                    names.join(", ")
                );
                identity
            }
        };
        Ok(Some(identity))
    }
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The certificate could not be generated.
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate/key pair (e.g. the key does not match the certificate).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A certificate chain with its private key.
#[derive(Debug)]
pub struct TlsIdentity {
    /// Leaf first.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// The leaf certificate as PEM (what a client must trust for a self-signed certificate).
    pub cert_pem: String,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        TlsIdentity {
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
            cert_pem: self.cert_pem.clone(),
        }
    }
}

impl TlsIdentity {
    /// Reads a PEM certificate chain and a PEM private key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let pem_error = |path: &Path, message: String| TlsError::Pem {
            path: path.to_path_buf(),
            message,
        };
        let cert_pem = std::fs::read_to_string(cert).map_err(|e| pem_error(cert, e.to_string()))?;
        let cert_chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(cert, format!("invalid PEM certificate: {e}")))?;
        if cert_chain.is_empty() {
            return Err(pem_error(cert, "no CERTIFICATE block found".into()));
        }
        let key_der = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| pem_error(key, format!("no usable PEM private key: {e}")))?;
        Ok(TlsIdentity {
            cert_chain,
            key: key_der,
            cert_pem,
        })
    }

    /// Generates a self-signed certificate for `names` (DNS names or IP addresses).
    pub fn self_signed(names: &[String]) -> Result<Self, TlsError> {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(names.to_vec())?;
        Ok(TlsIdentity {
            cert_chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(signing_key.serialize_der())),
            cert_pem: cert.pem(),
        })
    }

    /// The rustls server configuration: TLS 1.2 and 1.3 on aws-lc-rs, ALPN `http/1.1` only
    /// (the Phoenix WebSocket needs an HTTP/1.1 Upgrade, and one protocol behaves exactly like
    /// the plain-HTTP server).
    pub fn server_config(self) -> Result<rustls::ServerConfig, TlsError> {
        // The provider is explicit: the dependency tree enables both ring and aws-lc-rs in
        // rustls, so there is no process-wide default to rely on.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.cert_chain, self.key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// A tokio-rustls acceptor for this identity.
    pub fn acceptor(self) -> Result<TlsAcceptor, TlsError> {
        Ok(TlsAcceptor::from(Arc::new(self.server_config()?)))
    }

    /// An acceptor for TURN over TLS with the same certificate: no ALPN (browsers' TURN
    /// clients offer none, and a server list would refuse a client offering others).
    pub fn turn_acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        let mut config = self.clone().server_config()?;
        config.alpn_protocols.clear();
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}
