//! The lock that makes one process the owner of an embedded data directory.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// An exclusive advisory lock on `<database>.lock`. The operating system releases it when the
/// process dies, however it dies, so a crash never blocks a restart.
pub struct DataLock(#[allow(dead_code)] File);

impl DataLock {
    pub fn acquire(database: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = database.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        }
        let path = database.with_extension("lock");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        if file.try_lock().is_err() {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            anyhow::bail!(
                "another chat-system process (pid {}) is serving {}; the embedded shape allows one \
                 process per data directory: stop it, or give this one another DATA_DIR",
                holder.trim(),
                database.display()
            );
        }
        file.set_len(0)?;
        write!(file, "{}", std::process::id())?;
        Ok(Self(file))
    }
}
