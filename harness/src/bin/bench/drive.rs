//! Driving one scenario against a server for a measured period, closed or open loop, into a
//! [`Measurement`]; both shapes' runs (`embedded.rs`, `scaled.rs`) go through it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::Method;

use crate::load::{self, Conn};
use crate::report::Measurement;
use crate::scenario::{Generator, Kind, Ledger, Plan};

/// How each scenario is driven: for how long, over how many connections, and the ledger of
/// what the runs created (so later runs read and count it).
pub struct Bench {
    pub duration: Duration,
    pub connections: usize,
    pub ledger: Arc<Ledger>,
    /// Seeds the requests' generators (chats, numbers, bodies, terms drawn).
    pub seed: u64,
}

/// The seed of the measured runs; a warm-up gets another.
pub const MEASURED_SEED: u64 = 0;
const WARM_UP_SEED: u64 = 1;

impl Bench {
    pub fn new(duration: Duration, connections: usize) -> Self {
        Self {
            duration,
            connections,
            ledger: Arc::new(Ledger::default()),
            seed: MEASURED_SEED,
        }
    }

    /// A quarter as long, same connections and ledger, another seed: it warms the caches
    /// (ids, pages, counters) without touching exactly the rows the measured run will.
    pub fn warm_up(&self) -> Bench {
        Bench {
            duration: self.duration / 4,
            connections: self.connections,
            ledger: self.ledger.clone(),
            seed: WARM_UP_SEED,
        }
    }

    /// Closed loop: every connection sends its next request when the last one is answered.
    pub async fn closed(
        &self,
        addr: SocketAddr,
        kind: Kind,
        plan: &Plan,
        stored: u64,
    ) -> anyhow::Result<Measurement> {
        eprintln!(
            "bench: {} (closed, {} connections)",
            kind.name(),
            self.connections
        );
        let generator = Arc::new(Generator::new(kind, plan.clone(), self.ledger.clone()));
        let outcome =
            load::closed(addr, generator, self.connections, self.duration, self.seed).await?;
        Ok(Measurement::new(
            kind,
            "closed",
            self.connections,
            None,
            stored,
            &outcome,
        ))
    }

    /// Open loop at `rate` requests/s, on twice the connections.
    pub async fn open(
        &self,
        addr: SocketAddr,
        kind: Kind,
        plan: &Plan,
        rate: f64,
        stored: u64,
    ) -> anyhow::Result<Measurement> {
        eprintln!("bench: {} (open, {rate:.0}/s)", kind.name());
        let connections = self.connections * 2;
        let generator = Arc::new(Generator::new(kind, plan.clone(), self.ledger.clone()));
        let outcome =
            load::open(addr, generator, rate, connections, self.duration, self.seed).await?;
        Ok(Measurement::new(
            kind,
            "open",
            connections,
            Some(rate),
            stored,
            &outcome,
        ))
    }
}

/// The application every scenario works in.
pub async fn create_application(addr: SocketAddr) -> anyhow::Result<String> {
    let mut conn = Conn::connect(addr).await?;
    let (status, body) = conn
        .send(Method::POST, "/applications", Some(r#"{"name":"bench"}"#))
        .await?;
    anyhow::ensure!(
        status.as_u16() == 201,
        "creating the application answered {status}"
    );
    let value: serde_json::Value = serde_json::from_slice(&body)?;
    value["token"]
        .as_str()
        .map(str::to_owned)
        .context("no token in the answer")
}
