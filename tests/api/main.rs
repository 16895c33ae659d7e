//! One integration-test binary: every test drives the real HTTP server on a random port with a
//! temporary data directory (and, for the crash tests, the real binary as a child process).

mod applications;
mod bench;
mod chats;
mod crash;
mod elasticsearch;
mod elasticsearch_worker;
mod errors;
mod faults;
mod helpers;
mod idempotency;
mod limits;
mod messages;
mod ops;
mod scaled;
mod scaled_broker;
mod scaled_worker;
mod search;
mod stack;
mod store;
