//! TLS: the certificates the listeners present and the client certificates they accept, the
//! replica's TLS link to its primary, and reloading all of it while the daemon runs.
//!
//! [`Tls`] holds one [`Loaded`] set, replaced whole: the files it came from, the rustls
//! server configuration every TLS listener (RESP, memcached, HTTPS) hands new connections, and
//! the client configuration the replica's link uses. `CONFIG SET tls-cert-file ...` loads a
//! new set from the files and swaps it in only once every file has been read and checked (the
//! key matches the certificate, the CA file holds certificates, the flags that need a CA have
//! one); connections already open keep the session they made with the old one. A refused
//! reload changes nothing.
//!
//! Handshakes run on the connection's own task, never in an accept loop, each bounded by
//! `--tls-handshake-timeout-ms` (10 s): a client that opens a connection and stalls mid-way
//! costs a task and its buffers for that long, not a worker. While they run they count toward
//! `--maxclients` ([`Tls::handshaking`]).
//!
//! Why a `RwLock` and not a lock-free cell: a new connection takes the read lock once, to
//! clone an `Arc`; a reload writes once in a blue moon. Nothing is held across an `.await`.

use crate::config::Config;
use crate::stream::Stream;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Largest PEM file read. Real chains and bundles are a few KiB (a system CA bundle ~200 KiB);
/// the bound keeps a wrong path (`/dev/zero`) from filling memory.
const MAX_PEM_FILE: u64 = 1 << 20;

/// Whether TLS clients must present a certificate (Redis's `tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthClients {
    /// A certificate signed by the CA file is required (the default, as in Redis).
    #[default]
    Yes,
    /// No certificate is asked for.
    No,
    /// A certificate is asked for and checked if presented; clients without one are served.
    Optional,
}

impl AuthClients {
    /// `yes`, `no` or `optional`, in any case.
    pub fn parse(text: &str) -> Option<AuthClients> {
        match text.trim().to_ascii_lowercase().as_str() {
            "yes" => Some(AuthClients::Yes),
            "no" => Some(AuthClients::No),
            "optional" => Some(AuthClients::Optional),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AuthClients::Yes => "yes",
            AuthClients::No => "no",
            AuthClients::Optional => "optional",
        }
    }
}

/// What a TLS set is made from: the files and the two switches that decide what they must
/// hold. CONFIG GET reads these; CONFIG SET changes some and reloads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub auth_clients: AuthClients,
    /// The replica connects to its primary over TLS (`--tls-replication`).
    pub replication: bool,
}

/// Why a TLS set could not be made. The daemon does not start with one; CONFIG SET refuses
/// it and keeps the set in force.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path} is larger than {MAX_PEM_FILE} bytes: not a PEM file")]
    TooLarge { what: &'static str, path: PathBuf },
    #[error("{what} {path} is not valid PEM: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{what} {path} holds no {item}")]
    Empty {
        what: &'static str,
        path: PathBuf,
        item: &'static str,
    },
    #[error("a TLS listener (--tls-port, --memcached-tls-port, --http-tls yes) needs --tls-cert-file and --tls-key-file")]
    NeedsCertificate,
    #[error("--tls-cert-file and --tls-key-file go together: give both or neither")]
    HalfAPair,
    #[error("--tls-auth-clients {0} needs --tls-ca-cert-file, the CA whose client certificates are accepted; give one, or set --tls-auth-clients no to serve clients without certificates")]
    AuthNeedsCa(&'static str),
    #[error("--tls-replication yes needs --tls-ca-cert-file, the CA that signed the primary's certificate")]
    ReplicationNeedsCa,
    #[error("key {key} does not match certificate {cert} (the first certificate of the file)")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("certificate {cert} and key {key}: {source}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("CA file {path}: {reason}")]
    Ca { path: PathBuf, reason: String },
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Why one handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("no handshake within {0:?}")]
    TimedOut(Duration),
    #[error("{0}")]
    Failed(std::io::Error),
    #[error("TLS is not configured: {0}")]
    NotConfigured(&'static str),
    #[error("'{0}' is not a name a certificate can hold")]
    BadName(String),
}

/// One set of certificates, as loaded from [`TlsFiles`].
pub struct Loaded {
    pub files: TlsFiles,
    /// What TLS listeners hand new connections (None while no certificate is configured).
    server: Option<Arc<ServerConfig>>,
    /// What the replica's link uses (None without a CA file).
    client: Option<Arc<ClientConfig>>,
}

impl Loaded {
    /// Read and check every file of `files`. `serves` says whether a listener uses TLS, which
    /// makes a certificate, and with client authentication a CA, necessary.
    pub fn load(files: TlsFiles, serves: bool) -> Result<Loaded, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let pair = match (&files.cert, &files.key) {
            (Some(cert), Some(key)) => Some(read_pair(cert, key)?),
            (None, None) => None,
            _ => return Err(TlsError::HalfAPair),
        };
        let roots = files.ca.as_deref().map(read_roots).transpose()?;
        if serves && pair.is_none() {
            return Err(TlsError::NeedsCertificate);
        }
        if serves && files.auth_clients != AuthClients::No && roots.is_none() {
            return Err(TlsError::AuthNeedsCa(files.auth_clients.name()));
        }
        if files.replication && roots.is_none() {
            return Err(TlsError::ReplicationNeedsCa);
        }
        let server = match (&pair, serves) {
            (Some((cert_path, key_path, certs, key)), true) => {
                let builder = ServerConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()?;
                let builder = match (&roots, files.auth_clients) {
                    (Some(roots), AuthClients::Yes | AuthClients::Optional) => {
                        let verifier = WebPkiClientVerifier::builder_with_provider(
                            roots.clone(),
                            provider.clone(),
                        );
                        let verifier = if files.auth_clients == AuthClients::Optional {
                            verifier.allow_unauthenticated()
                        } else {
                            verifier
                        };
                        let verifier = verifier.build().map_err(|e| TlsError::Ca {
                            path: files.ca.clone().unwrap_or_default(),
                            reason: e.to_string(),
                        })?;
                        builder.with_client_cert_verifier(verifier)
                    }
                    _ => builder.with_no_client_auth(),
                };
                let config = builder
                    .with_single_cert(certs.clone(), key.clone_key())
                    .map_err(|source| pair_error(cert_path, key_path, source))?;
                Some(Arc::new(config))
            }
            _ => None,
        };
        let client = match &roots {
            Some(roots) => {
                let verifier =
                    WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                        .build()
                        .map_err(|e| TlsError::Ca {
                            path: files.ca.clone().unwrap_or_default(),
                            reason: e.to_string(),
                        })?;
                let builder = ClientConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()?
                    .with_webpki_verifier(verifier);
                // The certificate is also this node's client certificate, for a primary that
                // requires one (as Redis uses tls-cert-file when no client certificate is set).
                let config = match pair {
                    Some((cert_path, key_path, certs, key)) => builder
                        .with_client_auth_cert(certs, key)
                        .map_err(|source| pair_error(&cert_path, &key_path, source))?,
                    None => builder.with_no_client_auth(),
                };
                Some(Arc::new(config))
            }
            None => None,
        };
        Ok(Loaded {
            files,
            server,
            client,
        })
    }
}

/// rustls's refusal of a certificate and key, in words (its own for a mismatch names an enum).
fn pair_error(cert: &Path, key: &Path, source: rustls::Error) -> TlsError {
    let (cert, key) = (cert.to_path_buf(), key.to_path_buf());
    match source {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsError::KeyMismatch { cert, key }
        }
        source => TlsError::Pair { cert, key, source },
    }
}

/// A PEM file's bytes, at most [`MAX_PEM_FILE`].
fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let read = |source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(read)?
        .take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(TlsError::TooLarge {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

fn pem_error(what: &'static str, path: &Path, e: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::Pem {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Every certificate of a PEM file, in order.
fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_pem(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_path_buf(),
            item: "certificate (-----BEGIN CERTIFICATE-----)",
        });
    }
    Ok(certs)
}

type Pair = (
    PathBuf,
    PathBuf,
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
);

/// The certificate chain and its key (whether they match is checked by rustls when a
/// configuration is built from them).
fn read_pair(cert: &Path, key: &Path) -> Result<Pair, TlsError> {
    let certs = read_certs("certificate file", cert)?;
    let what = "key file";
    let bytes = read_pem(what, key)?;
    let private = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            what,
            path: key.to_path_buf(),
            item: "private key (PKCS#8, PKCS#1 or SEC1 PEM)",
        },
        e => pem_error(what, key, e),
    })?;
    Ok((cert.to_path_buf(), key.to_path_buf(), certs, private))
}

/// The CA file as trust anchors; a certificate in it that is not a usable anchor is an error
/// (a CA bundle with a broken entry is a mistake to hear of, not to skip).
fn read_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs("CA file", path)? {
        roots.add(cert).map_err(|e| TlsError::Ca {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

/// The daemon's TLS: the set in force and the handshakes under way.
pub struct Tls {
    current: RwLock<Arc<Loaded>>,
    /// Held through a whole [`Tls::update`], so two CONFIG SETs at once do not lose either's
    /// change.
    updating: Mutex<()>,
    /// Whether a listener uses TLS (fixed at start: listeners are not opened at run time).
    serves: bool,
    handshake_timeout: Duration,
    handshaking: Arc<AtomicUsize>,
}

impl Tls {
    /// The set `config` names, loaded and checked.
    pub fn new(config: &Config) -> Result<Tls, TlsError> {
        let serves = config.tls_port.is_some()
            || config.memcached_tls_port.is_some()
            || (config.http_tls == "yes" && config.http_port.is_some());
        let auth_clients = AuthClients::parse(&config.tls_auth_clients).unwrap_or_default();
        let files = TlsFiles {
            cert: config.tls_cert_file.clone(),
            key: config.tls_key_file.clone(),
            ca: config.tls_ca_cert_file.clone(),
            auth_clients,
            replication: config.tls_replication == "yes",
        };
        Ok(Tls {
            current: RwLock::new(Arc::new(Loaded::load(files, serves)?)),
            updating: Mutex::new(()),
            serves,
            handshake_timeout: Duration::from_millis(config.tls_handshake_timeout_ms.max(1)),
            handshaking: Arc::default(),
        })
    }

    fn loaded(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The files and switches in force.
    pub fn files(&self) -> TlsFiles {
        self.loaded().files.clone()
    }

    /// Change the files in force with `change`, load them (the files left alone are read
    /// again too: a renewed certificate at the same path is picked up), and if every one is
    /// good, put them in force for new connections. On an error nothing changes.
    pub fn update(&self, change: impl FnOnce(&mut TlsFiles)) -> Result<(), TlsError> {
        let _one_at_a_time = self.updating.lock().unwrap_or_else(PoisonError::into_inner);
        let mut files = self.files();
        change(&mut files);
        let loaded = Arc::new(Loaded::load(files, self.serves)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = loaded;
        Ok(())
    }

    /// Whether the replica's link uses TLS.
    pub fn replication(&self) -> bool {
        self.loaded().files.replication
    }

    /// Handshakes under way (they count toward `--maxclients`).
    pub fn handshaking(&self) -> usize {
        self.handshaking.load(Ordering::Relaxed)
    }

    /// Count a handshake as under way until the returned guard is dropped.
    pub fn pending(&self) -> Pending {
        self.handshaking.fetch_add(1, Ordering::Relaxed);
        Pending(self.handshaking.clone())
    }

    /// The server side of a handshake on an accepted connection, within the handshake timeout,
    /// with the certificates in force now.
    pub async fn accept(&self, tcp: TcpStream) -> Result<Stream, HandshakeError> {
        let config = self
            .loaded()
            .server
            .clone()
            .ok_or(HandshakeError::NotConfigured("no certificate"))?;
        let accept = TlsAcceptor::from(config).accept(tcp);
        match tokio::time::timeout(self.handshake_timeout, accept).await {
            Ok(Ok(s)) => Ok(s.into()),
            Ok(Err(e)) => Err(HandshakeError::Failed(e)),
            Err(_) => Err(HandshakeError::TimedOut(self.handshake_timeout)),
        }
    }

    /// The client side of a handshake with a primary at `host` (its certificate must name it
    /// and be signed by the CA file), within the handshake timeout.
    pub async fn connect(&self, host: &str, tcp: TcpStream) -> Result<Stream, HandshakeError> {
        let config = self
            .loaded()
            .client
            .clone()
            .ok_or(HandshakeError::NotConfigured("no --tls-ca-cert-file"))?;
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| HandshakeError::BadName(host.to_string()))?;
        let connect = TlsConnector::from(config).connect(name, tcp);
        match tokio::time::timeout(self.handshake_timeout, connect).await {
            Ok(Ok(s)) => Ok(s.into()),
            Ok(Err(e)) => Err(HandshakeError::Failed(e)),
            Err(_) => Err(HandshakeError::TimedOut(self.handshake_timeout)),
        }
    }
}

/// A handshake under way, counted in [`Tls::handshaking`] until dropped (however the task
/// that holds it ends).
pub struct Pending(Arc<AtomicUsize>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
