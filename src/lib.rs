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
//! HTTP handler ──> sequencer (number) ──> event sink ──ack──> 201
//!  (http/)          (sequencer/)           (events/)
//!                                           └─ direct: group-commit writer ─> store.apply(batch)
//! reads:  HTTP handler ──> store (store/)     search: HTTP handler ──> search port (search/)
//! ```
//!
//! - [`domain`]: tokens, numbers, names, bodies, search terms: validation lives here, once.
//! - [`http`]: the router and thin handlers; [`error`] renders every failure as
//!   `{"error": {"code", "message"}}`.
//! - [`service`]: what each request does, on the ports of [`app::App`].
//! - [`sequencer`]: who hands out numbers. Embedded: in-process counters, safe because a data
//!   directory is locked by one process.
//! - [`events`]: where writes go. Embedded: [`events::direct::DirectSink`], a writer task that
//!   gathers concurrent writes into one transaction and one fsync (group commit), answering each
//!   request after the commit.
//! - [`store`]: where rows live. [`store::Store::apply`] is the only write path: idempotent, one
//!   transaction per batch, counts updated in it. Embedded: SQLite in WAL mode (rusqlite; point
//!   reads on the request's thread, writes on the blocking pool).
//! - [`search`]: the search port. Embedded: SQLite FTS5 with the trigram tokenizer, in its own
//!   file kept by a background indexer (`store/sqlite_index.rs`), off the write path.
//! - [`app`] builds the ports from [`config::Config`] and serves; [`cli`] is the command line.

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
#[cfg(feature = "kafka")]
pub mod worker;
