//! Connections: a listener that counts them and a kill switch that fails them all.

use super::*;

/// Fired once, when the fake stops: every open connection fails its next read or write.
#[derive(Debug, Default)]
pub(super) struct Kill {
    pub(super) fired: AtomicBool,
    pub(super) notify: Arc<Notify>,
}

impl Kill {
    pub(super) fn fire(&self) {
        self.fired.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }
}

/// The peer and the number of the connection a request came on.
#[derive(Clone, Copy, Debug)]
pub(super) struct ConnInfo {
    pub(super) peer: SocketAddr,
    pub(super) id: u64,
}

impl Connected<IncomingStream<'_, CountingListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, CountingListener>) -> ConnInfo {
        *stream.remote_addr()
    }
}

/// A TCP listener that counts connections and can kill them all.
pub(super) struct CountingListener {
    pub(super) inner: TcpListener,
    pub(super) state: Arc<FakeState>,
    pub(super) kill: Arc<Kill>,
}

impl Listener for CountingListener {
    type Io = Conn;
    type Addr = ConnInfo;

    async fn accept(&mut self) -> (Conn, ConnInfo) {
        let (io, peer) = Listener::accept(&mut self.inner).await;
        // Go's net/http sets TCP_NODELAY too: small chunks leave at once.
        io.set_nodelay(true).expect("set TCP_NODELAY");
        self.state.open_connections.fetch_add(1, Ordering::SeqCst);
        let id = self.state.bump(&self.state.connections_accepted);
        let conn = Conn {
            io,
            killed: Box::pin(self.kill.notify.clone().notified_owned()),
            kill: self.kill.clone(),
            state: self.state.clone(),
        };
        (conn, ConnInfo { peer, id })
    }

    fn local_addr(&self) -> io::Result<ConnInfo> {
        Ok(ConnInfo {
            peer: self.inner.local_addr()?,
            id: 0,
        })
    }
}

/// An accepted connection: counted while open, reset when the fake stops.
pub(super) struct Conn {
    pub(super) io: TcpStream,
    /// Created at accept, so it sees a `notify_waiters` even before its first poll.
    pub(super) killed: Pin<Box<OwnedNotified>>,
    pub(super) kill: Arc<Kill>,
    pub(super) state: Arc<FakeState>,
}

impl Conn {
    /// Whether the fake has stopped; registers for the wake-up when it has not.
    pub(super) fn poll_killed(&mut self, cx: &mut Context<'_>) -> bool {
        self.kill.fired.load(Ordering::SeqCst) || self.killed.as_mut().poll(cx).is_ready()
    }
}

pub(super) fn reset() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "the fake Ollama stopped")
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_killed(cx) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_killed(cx) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_killed(cx) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.state.drop_connection();
    }
}
