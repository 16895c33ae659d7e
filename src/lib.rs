//! # chat-system
//!
//! A chat backend: applications (identified by a generated token) hold numbered chats, chats hold
//! numbered messages, messages can be searched. One HTTP API, two deployment shapes.
//!
//! ## A tour
//!
//! Writes are **events**, and everything hangs off that idea:
//!
//! ```text
//! HTTP handler ──> Service ──> sequencer (number) ──> event sink ──ack──> 201
//!  (http/)        (service.rs)  (sequencer/)            (events/)
//!                                 ├ embedded: direct.rs  group-commit writer ─> store.apply(batch)
//!                                 └ scaled:   kafka.rs   topic ─> worker.rs ─> store.apply(batch)
//!                                                                          └─> Indexer (search/)
//! reads:  HTTP handler ──> Service ──> store (store/)    search: ──> Search port (search/)
//! ```
//!
//! Dependencies point one way (`.ci/layers.py` checks it): `main → cli → app → http → service
//! → ports ← adapters`, with `domain`, `error` and `config` at the bottom.
//!
//! - [`domain`]: tokens, numbers, names, bodies, search terms (validation lives here, once), and
//!   [`domain::event`]: the typed write events and what applying one produced.
//! - [`http`]: the router, thin handlers (the REST routes, the SSE/WebSocket streams, the web
//!   console and the operators' listing) and middleware (limits, idempotency, metrics) over an
//!   [`http::HttpState`]; `http::serve(listener, state, shutdown)`. [`error`] renders every
//!   failure as `{"error": {"code", "message"}}`.
//! - [`service`]: [`service::Service`], the ports and what each request does with them.
//! - Ports (trait in the folder's `mod.rs`) and their adapters (one file or folder each):
//!   - [`store`] (`Store`): `store/sqlite/` (embedded: SQLite in WAL mode on rusqlite, point reads
//!     on the request's thread, writes on the blocking pool, FTS5 search kept by a background
//!     indexer in its own file) and `store/mysql/` (scaled: MySQL/MariaDB on sqlx).
//!     [`store::Store::apply`] is the only write path: idempotent, one transaction per batch,
//!     counts updated in it.
//!   - [`sequencer`] (`Sequencer`): who hands out numbers. `memory.rs` (embedded: in-process
//!     counters, safe because a data directory is locked by one process), `redis.rs` (scaled:
//!     `INCR`, with recovery after a Redis reset).
//!   - [`events`] (`EventSink`): where writes go. `direct.rs` (embedded: a writer task that
//!     gathers concurrent writes into one transaction and one fsync, answering each request
//!     after the commit), `kafka.rs` (scaled: a topic per model, answered after the broker's
//!     acknowledgement).
//!   - [`search`] (`Search`, `Indexer`): the SQL stores search themselves;
//!     `search/elasticsearch/` is the scaled search engine.
//!   - [`idempotency`] (`Idempotency`, `ResponseStore`): `local.rs` (embedded: claims in the
//!     process, responses in the store), `redis.rs` (scaled: `SET NX`).
//!   - [`redis_conn`]: the Redis connection that heals itself, shared by the Redis adapters.
//!   - [`streams`] (`Publisher`): live streams. `Hub` is the in-process fan-out (the embedded
//!     writer publishes into it after each commit); `follow.rs` is one subscriber (the changes
//!     feed from the store, then live, gaps filled from the store); `redis.rs` carries changes
//!     from the workers to every API process (scaled).
//! - [`worker`] (scaled): consumes a topic in batches, stores them (one consumer group; then
//!   publishes the committed changes to the streams) and indexes messages (another group),
//!   committing offsets after each batch took effect.
//! - [`app`]: the composition root, the ports built from [`config::Config`] by URL scheme;
//!   [`cli`]: the command line and its commands (`serve`, `migrate`, `sync-counts`, `reindex`,
//!   `worker`).

pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod http;
pub mod idempotency;
pub mod metrics;
pub mod redis_conn;
pub mod search;
pub mod sequencer;
pub mod service;
pub mod store;
pub mod streams;
#[cfg(feature = "kafka")]
pub mod worker;
