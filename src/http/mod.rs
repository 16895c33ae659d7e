//! The HTTP surface: every route of SPEC §2, at `/` and under `/api/v1`, plus the operational
//! endpoints, and the live streams (`streams.rs`: SSE and WebSocket). Handlers are thin:
//! parse, call a [`crate::service`] method, render.

mod admin;
mod applications;
mod chats;
mod console;
mod extract;
mod idempotency;
mod limits;
mod listener;
mod messages;
mod metrics_layer;
mod ops;
mod path;
mod router;
mod server;
mod server_conn;
mod state;
mod streams;

pub use ops::ApiDoc;
pub use router::router;
pub use server::serve;
pub use state::HttpState;
