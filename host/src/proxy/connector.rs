//! The upstream connector: TCP with a connect timeout and `TCP_NODELAY`, then TLS with SNI
//! when the cluster has a TLS transport socket. Used by [`super::pool`]; its errors keep
//! what Envoy needs to pick the response flag (refused vs timed out vs TLS).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::bootstrap::TlsConfig;

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The cluster's `connect_timeout` passed.
    #[error("connect timeout")]
    Timeout,
    /// The TCP connect failed (e.g. refused).
    #[error("connect: {0}")]
    Io(io::Error),
    /// The TLS handshake failed.
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
}

impl ConnectError {
    /// Envoy's transport failure reason for the code details (`delayed_connect_error:_111`).
    pub fn transport_reason(&self) -> Option<String> {
        match self {
            Self::Io(e) => Some(match e.raw_os_error() {
                Some(code) => format!("delayed connect error: {code}"),
                None => format!("delayed connect error: {e}"),
            }),
            Self::Tls(e) => Some(format!("TLS error: {e}")),
            Self::Timeout => None,
        }
    }
}

/// Connects to an upstream host's address (the cluster has resolved it).
#[derive(Clone)]
pub struct Connector {
    connect_timeout: Duration,
    tls: Option<(TlsConnector, Option<ServerName<'static>>)>,
}

impl Connector {
    /// A connector for one cluster.
    ///
    /// # Errors
    /// The trusted CA bundle or the SNI is invalid.
    pub fn new(connect_timeout: Duration, tls: Option<&TlsConfig>) -> Result<Self, String> {
        let tls = match tls {
            None => None,
            Some(cfg) => {
                let mut roots = rustls::RootCertStore::empty();
                match &cfg.trusted_ca_pem {
                    Some(pem) => {
                        use rustls::pki_types::pem::PemObject;
                        let mut n = 0;
                        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                            let cert = cert.map_err(|e| format!("trusted_ca: {e}"))?;
                            roots.add(cert).map_err(|e| format!("trusted_ca: {e}"))?;
                            n += 1;
                        }
                        if n == 0 {
                            return Err("trusted_ca: no PEM certificate found".into());
                        }
                    }
                    None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let mut config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                config.alpn_protocols = cfg.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
                let sni = match &cfg.sni {
                    Some(s) => Some(
                        ServerName::try_from(s.clone()).map_err(|e| format!("sni {s:?}: {e}"))?,
                    ),
                    None => None,
                };
                if sni.is_none() {
                    // Envoy sends no SNI then; rustls needs a name to verify, so we use the IP.
                    config.enable_sni = false;
                }
                Some((TlsConnector::from(Arc::new(config)), sni))
            }
        };
        Ok(Self {
            connect_timeout,
            tls,
        })
    }

    /// A connection to `addr`, TLS-wrapped when the cluster says so.
    ///
    /// # Errors
    /// Timeout, refused (or any other TCP error), or a failed TLS handshake.
    pub async fn connect(&self, addr: SocketAddr) -> Result<UpstreamIo, ConnectError> {
        let tcp = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Err(_) => return Err(ConnectError::Timeout),
            Ok(Err(e)) => return Err(ConnectError::Io(e)),
            Ok(Ok(s)) => s,
        };
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(UpstreamIo::Plain(tcp)),
            Some((connector, sni)) => {
                let name = sni
                    .clone()
                    .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(ConnectError::Tls)?;
                Ok(UpstreamIo::Tls(Box::new(tls)))
            }
        }
    }
}

/// A plain or TLS upstream connection.
pub enum UpstreamIo {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}
