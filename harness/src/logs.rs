//! Log files of child processes: one per process (or per command), appended to across restarts.

use std::fs::File;
use std::path::Path;

use anyhow::Context;

/// `path` opened for appending (created if missing).
pub fn append(path: &Path) -> anyhow::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}
