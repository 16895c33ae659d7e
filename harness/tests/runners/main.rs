//! The harness's binaries still work: `bench --smoke` (both shapes) and `faults` in miniature,
//! each run as a child process against the real `chat-system` binary.
//!
//! That binary belongs to the server's package, so cargo gives its path only to the server's
//! tests: here it is taken from the target directory, beside `bench`. `cargo test` at the
//! workspace root builds it first (it builds every member's binaries before running a test);
//! `cargo test -p chat-harness` alone does not rebuild it.

mod bench;
mod faults;

use std::path::PathBuf;

/// The `chat-system` binary of this build.
pub fn server_binary() -> PathBuf {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_bench")).with_file_name("chat-system");
    assert!(
        path.is_file(),
        "{} is not built: run `cargo test` at the workspace root",
        path.display()
    );
    path
}
