//! The TCP listener: every connection gets an idle timeout, so a client that opens a
//! connection and then sends nothing (or stops half-way through its headers) is dropped after
//! `IDLE_TIMEOUT` instead of holding a socket forever.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio_io_timeout::TimeoutStream;

pub struct IdleTimeoutListener {
    inner: TcpListener,
    idle: Duration,
}

impl IdleTimeoutListener {
    pub fn new(inner: TcpListener, idle: Duration) -> Self {
        Self { inner, idle }
    }
}

impl Listener for IdleTimeoutListener {
    type Io = Pin<Box<TimeoutStream<TcpStream>>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, address) = Listener::accept(&mut self.inner).await;
        let _ = stream.set_nodelay(true);
        let mut stream = TimeoutStream::new(stream);
        // A read that waits this long ends the connection: an idle keep-alive connection, or
        // a client that stopped sending.
        stream.set_read_timeout(Some(self.idle));
        (Box::pin(stream), address)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// The client's address, for the per-client rate limit.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, IdleTimeoutListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, IdleTimeoutListener>) -> Self {
        Self(*stream.remote_addr())
    }
}
