//! One integration-test binary: every test drives the real HTTP server on a random port with a
//! temporary data directory (and, for the crash tests, the real binary as a child process).

mod admin;
mod applications;
mod chats;
mod console;
mod crash;
mod durability;
mod elasticsearch;
mod elasticsearch_cluster;
mod elasticsearch_worker;
mod errors;
mod harness;
mod helpers;
mod idempotency;
mod limits;
mod messages;
mod ops;
mod protocol;
mod revisions;
mod scaled;
mod scaled_broker;
mod scaled_revisions;
mod scaled_worker;
mod search;
mod shutdown;
mod stack;
mod store;
mod store_revisions;
mod streams;
