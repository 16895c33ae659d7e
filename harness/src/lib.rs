//! # chat-harness
//!
//! The one process harness of chat-system: everything that starts the `chat-system` binary or
//! the services of the scaled shape as child processes. Three users share it: the load harness
//! (`bench`) and the fault-injection runner (`faults`), both binaries of this crate, and the
//! server's integration suite (`tests/api`, through a dev-dependency).
//!
//! - [`env`]: the one list of variables the server's configuration reads (every child starts
//!   with all of them removed, then gets exactly those of its shape), and the scaled shape's.
//! - [`process`]: [`ChatSystem`] runs the binary (`serve`, `worker`, `migrate`, `sync-counts`…)
//!   with its arguments, environment and log files; a [`Server`] is a child that said where it
//!   listens ([`listening`] reads that line, with a deadline); `kill -9`, SIGTERM, restart.
//! - [`service`]: a program on a port of its own, restartable: a private MariaDB
//!   ([`mariadb::server`]), Redis ([`redis::server`]) or tansu broker ([`tansu::broker`]).
//! - [`mariadb`]: a fresh database on a MariaDB server, dropped at the end.
//! - [`redis`]: deleting a namespace's keys.
//! - [`testing`]: what the test suites read from `CHAT_TEST_*`.

pub mod env;
pub mod listening;
pub mod logs;
pub mod mariadb;
pub mod process;
pub mod redis;
pub mod service;
pub mod tansu;
pub mod testing;

pub use process::{kill9, terminate, ChatSystem, Server};
pub use service::Service;
