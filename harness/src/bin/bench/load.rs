//! The load generator: keep-alive HTTP/1.1 connections, closed and open loop, HDR histograms.
//!
//! - **Closed loop**: N connections, each sends its next request as soon as the previous answer
//!   arrived. Measures the maximum throughput; its latency is the latency *at saturation*.
//! - **Open loop**: requests are due at a fixed rate (request `i` at `start + i / rate`) whatever
//!   the server does. A connection takes the next due request, waits for its due time and sends
//!   it; latency is measured from the **due time**, not from the send, so a request that waited
//!   for a free connection because the server stalled counts its wait (no coordinated omission).
//!   Due times are honoured with tokio's 1 ms timer: a request may leave up to ~1 ms late, and
//!   that lateness is counted against the server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::net::TcpStream;

use crate::scenario::{Generator, Req, Verdict};

/// Latencies are recorded in microseconds, up to a minute, with 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake failed")?;
        tokio::spawn(connection);
        Ok(Self { addr, sender })
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        self.sender.ready().await.context("connection closed")?;
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.addr.to_string());
        if body.is_some() {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let payload = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_owned()));
        let request = builder.body(Full::new(payload))?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    async fn send_req(&mut self, req: &Req) -> anyhow::Result<(StatusCode, Bytes)> {
        self.send(req.method.clone(), &req.path, req.body.as_deref())
            .await
    }
}

/// What one load run saw.
pub struct Outcome {
    pub hist: Histogram<u64>,
    pub ok: u64,
    pub errors: u64,
    pub duplicates: u64,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn empty() -> Self {
        Self {
            hist: histogram(),
            ok: 0,
            errors: 0,
            duplicates: 0,
            elapsed: Duration::ZERO,
        }
    }

    fn merge(&mut self, other: &Outcome) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
        self.ok += other.ok;
        self.errors += other.errors;
        self.duplicates += other.duplicates;
    }

    /// Adds a later run of the same scenario (its requests, and its time).
    pub fn append(&mut self, later: &Outcome) {
        self.merge(later);
        self.elapsed += later.elapsed;
    }

    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Sends `req`, checks the answer and records the latency measured from `since`.
async fn exchange(
    conn: &mut Option<Conn>,
    addr: SocketAddr,
    generator: &Generator,
    req: &Req,
    since: Instant,
    outcome: &mut Outcome,
) {
    if conn.is_none() {
        *conn = Conn::connect(addr).await.ok();
    }
    let Some(live) = conn.as_mut() else {
        outcome.errors += 1;
        return;
    };
    match live.send_req(req).await {
        Ok((status, body)) => {
            let micros = since.elapsed().as_micros() as u64;
            outcome.hist.saturating_record(micros.max(1));
            match generator.check(req, status, &body) {
                Verdict::Ok => outcome.ok += 1,
                Verdict::Error => outcome.errors += 1,
                Verdict::Duplicate => {
                    outcome.ok += 1;
                    outcome.duplicates += 1;
                }
            }
        }
        Err(_) => {
            outcome.errors += 1;
            *conn = None;
        }
    }
}

/// The generator seed of one connection of a run seeded `seed`: runs of different seeds (a
/// warm-up and the measured run) draw different requests, so the measured run does not replay
/// what the warm-up just brought into the caches.
fn connection_seed(seed: u64, connection: usize) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ connection as u64
}

/// As fast as possible on `connections` connections for `duration`.
pub async fn closed(
    addr: SocketAddr,
    generator: Arc<Generator>,
    connections: usize,
    duration: Duration,
    seed: u64,
) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(connections);
    for connection in 0..connections {
        let generator = generator.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(connection_seed(seed, connection) ^ 0x5eed);
            let mut conn = Conn::connect(addr).await.ok();
            let mut outcome = Outcome::empty();
            while Instant::now() < deadline {
                let Some(req) = generator.next(&mut rng) else {
                    break;
                };
                let sent = Instant::now();
                exchange(&mut conn, addr, &generator, &req, sent, &mut outcome).await;
            }
            outcome
        }));
    }
    collect(tasks, start).await
}

/// Exactly `total` requests, as fast as possible, on `connections` connections.
pub async fn count(
    addr: SocketAddr,
    generator: Arc<Generator>,
    connections: usize,
    total: u64,
    seed: u64,
) -> anyhow::Result<Outcome> {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for connection in 0..connections {
        let generator = generator.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(connection_seed(seed, connection) ^ 0xc0de);
            let mut conn = Conn::connect(addr).await.ok();
            let mut outcome = Outcome::empty();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let Some(req) = generator.next(&mut rng) else {
                    break;
                };
                let sent = Instant::now();
                exchange(&mut conn, addr, &generator, &req, sent, &mut outcome).await;
            }
            outcome
        }));
    }
    collect(tasks, start).await
}

/// `rate` requests per second offered for `duration`, on up to `connections` connections.
pub async fn open(
    addr: SocketAddr,
    generator: Arc<Generator>,
    rate: f64,
    connections: usize,
    duration: Duration,
    seed: u64,
) -> anyhow::Result<Outcome> {
    let total = (rate * duration.as_secs_f64()).ceil().max(1.0) as u64;
    let interval = 1.0 / rate;
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::with_capacity(connections);
    for connection in 0..connections {
        let generator = generator.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(connection_seed(seed, connection) ^ 0x0be7);
            let mut conn = Conn::connect(addr).await.ok();
            let mut outcome = Outcome::empty();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    break;
                }
                let due = start + Duration::from_secs_f64(index as f64 * interval);
                tokio::time::sleep_until(due.into()).await;
                let Some(req) = generator.next(&mut rng) else {
                    break;
                };
                exchange(&mut conn, addr, &generator, &req, due, &mut outcome).await;
            }
            outcome
        }));
    }
    collect(tasks, start).await
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<Outcome>>,
    start: Instant,
) -> anyhow::Result<Outcome> {
    let mut total = Outcome::empty();
    for task in tasks {
        total.merge(&task.await.context("a load task panicked")?);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}
