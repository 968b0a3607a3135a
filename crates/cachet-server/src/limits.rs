//! Denial-of-service limits no caller can widen.
//!
//! - **Per-client rate limit** on the unauthenticated routes
//!   (`/v1/challenge`, `/v1/attest`, `/v1/secrets/release`): a token bucket
//!   per client address (GCRA, from the `governor` crate: lock-free, keyed,
//!   and its keys can be swept). Each of these routes writes to the store
//!   (a nonce, an audit row) or burns CPU verifying evidence, so one address
//!   may not spend more than its share. Over budget: `429 rate_limited` with
//!   `Retry-After`, nothing read, nothing written.
//! - **Connections**: at most `max_connections` open at once and at most
//!   `max_connections_per_client` from one client address (more are closed
//!   on accept, so one address cannot starve the others, `/healthz` probes
//!   included); an idle timeout on every read and write of a connection; and
//!   hyper's header-read timeout (it needs a timer, which axum-server does
//!   not set), so a half-sent request is closed.
//!
//! A client address is its IP, and an IPv6 client its /64 (one host's usual
//! allocation, which it can cycle through freely). Behind a reverse proxy
//! every client has the proxy's address: rate-limit at the proxy, or raise
//! these budgets.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_io_timeout::TimeoutStream;

use crate::config::Config;
use crate::error::ApiError;

/// The address a client is counted under: its IPv4 address (also when
/// mapped into IPv6), or the /64 of its IPv6 address.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// The per-client token bucket of the unauthenticated routes.
pub struct ClientRateLimiter {
    /// `None`: unlimited (`rate_limit = 0`).
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// When idle buckets were last dropped (Unix seconds).
    last_sweep: AtomicI64,
}

/// How often buckets back at full budget are forgotten.
const SWEEP_EVERY_SECS: i64 = 60;

impl ClientRateLimiter {
    /// The limiter of `config` (`rate_limit` per minute, `rate_limit_burst` at once).
    pub fn new(config: &Config) -> Self {
        let limiter = NonZeroU32::new(config.rate_limit).map(|per_minute| {
            let burst = NonZeroU32::new(config.rate_limit_burst).unwrap_or(NonZeroU32::MIN);
            RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst))
        });
        Self { limiter, last_sweep: AtomicI64::new(crate::now()) }
    }

    /// `Ok` if `ip` may make one more request now, else how long to wait.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        self.sweep(limiter);
        limiter.check_key(&client_key(ip)).map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }

    /// Forget the buckets that are full again (about once a minute, by one
    /// request), so the table holds only recently active addresses.
    fn sweep(&self, limiter: &DefaultKeyedRateLimiter<IpAddr>) {
        let now = crate::now();
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now - last >= SWEEP_EVERY_SECS && self.last_sweep.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// Middleware: refuse a client over its budget with `429 rate_limited` and
/// `Retry-After` (whole seconds, at least 1) before anything is read.
pub async fn rate_limit(State(limiter): State<Arc<ClientRateLimiter>>, req: Request, next: Next) -> Response {
    let ip = req.extensions().get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    match limiter.check(ip) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let secs = secs.max(1);
            let mut resp = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests from this address; retry in {secs} s (the server's --rate-limit budget)"),
            )
            .into_response();
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            resp
        }
    }
}

/// Open connections, in all and per client address.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// The connection limits of a server.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: usize,
    max_per_client: usize,
    idle: Duration,
    counts: Mutex<Counts>,
}

impl ConnectionLimits {
    /// The limits of `config`.
    pub fn new(config: &Config) -> Arc<Self> {
        Arc::new(Self {
            max_total: config.max_connections,
            max_per_client: config.max_connections_per_client,
            idle: Duration::from_secs(config.idle_timeout),
            counts: Mutex::default(),
        })
    }

    /// A slot for a connection from `ip`, if both limits allow one.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let key = client_key(ip);
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mine = c.per_client.get(&key).copied().unwrap_or(0);
        if c.total >= self.max_total || mine >= self.max_per_client {
            return None;
        }
        c.total += 1;
        c.per_client.insert(key, mine + 1);
        Some(Slot { limits: self.clone(), key })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

/// One admitted connection's place; given back when the connection closes.
#[derive(Debug)]
struct Slot {
    limits: Arc<ConnectionLimits>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.limits.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_client.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_client.remove(&self.key);
            }
        }
    }
}

/// An admitted connection: every read and write fails once it has waited
/// longer than the idle timeout, and its slot is held until it is dropped.
pub struct LimitedStream {
    io: Pin<Box<TimeoutStream<TcpStream>>>,
    _slot: Slot,
}

impl AsyncRead for LimitedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.get_mut().io.as_mut().poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().io.as_mut().poll_write(cx, buf)
    }
    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        self.get_mut().io.as_mut().poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().io.as_mut().poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().io.as_mut().poll_shutdown(cx)
    }
}

/// An axum-server acceptor that admits a TCP connection within the
/// connection limits (closing it otherwise), with the idle timeout, and
/// hands it to `inner` (plain HTTP, or TLS on top).
#[derive(Clone)]
pub struct LimitAcceptor<A> {
    inner: A,
    limits: Arc<ConnectionLimits>,
}

impl<A> LimitAcceptor<A> {
    /// `inner` behind `limits`.
    pub fn new(inner: A, limits: Arc<ConnectionLimits>) -> Self {
        Self { inner, limits }
    }
}

type AcceptFuture<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

impl<A, S> axum_server::accept::Accept<TcpStream, S> for LimitAcceptor<A>
where
    A: axum_server::accept::Accept<LimitedStream, S>,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = A::Stream;
    type Service = A::Service;
    type Future = AcceptFuture<(A::Stream, A::Service)>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let Some(slot) = stream.peer_addr().ok().and_then(|peer| self.limits.admit(peer.ip())) else {
            tracing::debug!("connection refused: connection limit reached");
            drop(stream);
            return Box::pin(std::future::ready(Err(io::Error::other("connection limit reached"))));
        };
        let mut io = TimeoutStream::new(stream);
        io.set_read_timeout(Some(self.limits.idle));
        io.set_write_timeout(Some(self.limits.idle));
        Box::pin(self.inner.accept(LimitedStream { io: Box::pin(io), _slot: slot }, service))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        assert_eq!(client_key("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_eq!(client_key("192.0.2.7".parse().unwrap()), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    fn config(rate: u32, burst: u32, total: usize, per_client: usize) -> Config {
        let mut c = crate::config::ServeArgs::default().resolve().unwrap();
        c.rate_limit = rate;
        c.rate_limit_burst = burst;
        c.max_connections = total;
        c.max_connections_per_client = per_client;
        c
    }

    #[test]
    fn a_client_over_its_budget_waits_and_others_do_not() {
        let l = ClientRateLimiter::new(&config(60, 3, 1, 1));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check(a).is_ok());
        }
        let wait = l.check(a).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "one token a second: {wait:?}");
        assert!(l.check("192.0.2.2".parse().unwrap()).is_ok(), "another address has its own budget");
        let unlimited = ClientRateLimiter::new(&config(0, 3, 1, 1));
        assert!((0..1000).all(|_| unlimited.check(a).is_ok()));
    }

    #[test]
    fn connections_are_capped_in_all_and_per_client_and_slots_come_back() {
        let limits = ConnectionLimits::new(&config(0, 1, 3, 2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = limits.admit(a).unwrap();
        let _a2 = limits.admit(a).unwrap();
        assert!(limits.admit(a).is_none(), "per-client cap");
        let _b1 = limits.admit(b).unwrap();
        assert!(limits.admit(b).is_none(), "total cap");
        drop(a1);
        assert_eq!(limits.open(), 2);
        assert!(limits.admit(b).is_some(), "a closed connection's slot is free again");
    }
}
