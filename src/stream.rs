//! [`Stream`]: one socket of the daemon, plain TCP or TLS, as one type.
//!
//! Every front-end (RESP, memcached, HTTP, a primary's replica stream, the replica's link)
//! reads and writes through `AsyncRead` / `AsyncWrite`, so TLS only changes the socket's type:
//! the connection loops, the decoders and the command table are the same code for both.
//!
//! Why an enum and not generics (`Connection<S: AsyncRead + AsyncWrite>`): a generic socket
//! would compile every loop that holds one twice and carry a type parameter through
//! `primary::serve_replica` and the memcached and HTTP front-ends, for a `match` per read or
//! write that costs nothing beside the system call under it. Why the TLS side is boxed: a
//! rustls connection is a large value (its record buffers and key schedule), and a box keeps
//! a plain connection's `Stream` the size of a `TcpStream`.
//!
//! One difference from a `TcpStream` matters to the loops: a TLS write that the kernel cannot
//! take at once is kept in rustls's buffer, and `write_all` still returns (tokio-rustls
//! reports the bytes as written once rustls holds them). Nothing in the loops flushes (a
//! `TcpStream` has nothing to flush), so [`Stream`] pushes such leftovers itself: every write
//! first sends what the previous one left, and every read first tries to. A connection loop
//! always goes back to reading after it writes, so a reply never waits in the buffer for the
//! client's next request.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TLS session over TCP, either side (the daemon's listeners are servers, a replica's link
/// to its primary is a client).
pub type TlsStream = tokio_rustls::TlsStream<TcpStream>;

/// A connection's socket: plain TCP, or TLS over TCP.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Stream {
    /// The TCP socket under it.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }

    /// The local address of the TCP socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().local_addr()
    }

    /// Whether this is a TLS connection.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Stream {
        Stream::Plain(s)
    }
}

impl From<tokio_rustls::server::TlsStream<TcpStream>> for Stream {
    fn from(s: tokio_rustls::server::TlsStream<TcpStream>) -> Stream {
        Stream::Tls(Box::new(s.into()))
    }
}

impl From<tokio_rustls::client::TlsStream<TcpStream>> for Stream {
    fn from(s: tokio_rustls::client::TlsStream<TcpStream>) -> Stream {
        Stream::Tls(Box::new(s.into()))
    }
}

/// Send what rustls holds from earlier writes. Ready(Ok) once nothing is left; Pending while
/// the kernel takes no more (the task is woken when it does).
fn push_pending(tls: &mut TlsStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    if tls.get_ref().1.wants_write() {
        Pin::new(tls).poll_flush(cx)
    } else {
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => {
                // Pending is fine here: the read goes on, and the task is woken by whichever
                // of the two the socket allows first.
                if let Poll::Ready(Err(e)) = push_pending(s, cx) {
                    return Poll::Ready(Err(e));
                }
                Pin::new(&mut **s).poll_read(cx, buf)
            }
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => {
                // What the last write left goes first: a peer that does not read then holds
                // the writer back, as a full TCP buffer does, instead of growing ours.
                std::task::ready!(push_pending(s, cx))?;
                Pin::new(&mut **s).poll_write(cx, buf)
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    /// TLS: send close_notify and whatever is pending, then close the write side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server and a client configuration for 127.0.0.1, with a self-signed certificate.
    fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).expect("cert");
        let cert = CertificateDer::from(made.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .expect("server config");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).expect("root");
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// A write whose end finds the socket full leaves its tail in rustls; the connection
    /// loops then read, and the tail must go out all the same. With a 4 KiB send buffer and
    /// a client that reads slowly, nearly every write ends that way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn what_a_write_leaves_in_rustls_goes_out_while_the_connection_reads() {
        let (server, client) = configs();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        const TOTAL: usize = 1 << 20;
        let reader = std::thread::spawn(move || {
            let name = ServerName::try_from("127.0.0.1").expect("name");
            let conn = rustls::ClientConnection::new(client, name).expect("client");
            let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            tcp.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut s = rustls::StreamOwned::new(conn, tcp);
            let mut got = 0;
            let mut buf = [0u8; 4096];
            while got < TOTAL {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            got
        });
        let (tcp, _) = listener.accept().await.expect("accept");
        let size: libc::c_int = 4096;
        // SAFETY: a valid socket and a c_int option of the size given.
        let set = unsafe {
            libc::setsockopt(
                tcp.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(set, 0, "SO_SNDBUF");
        let tls = tokio_rustls::TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .expect("handshake");
        let mut stream = Stream::from(tls);
        assert!(stream.is_tls());
        // As a connection loop does: one write, then a read that waits for the next request.
        stream.write_all(&vec![b'x'; TOTAL]).await.expect("write");
        let mut input = [0u8; 16];
        let _ = tokio::time::timeout(Duration::from_secs(8), stream.read(&mut input)).await;
        assert_eq!(reader.join().expect("reader"), TOTAL, "every byte arrived");
    }
}
