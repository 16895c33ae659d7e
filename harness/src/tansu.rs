//! tansu, the Kafka-compatible broker of the scaled shape's tests and runs.

use std::path::Path;

use tokio::process::Command;

use crate::service::{free_port, Service};

/// Where a tansu broker keeps its topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// In memory: gone with the process.
    Memory,
    /// `tansu.db` in the service's directory: kept across restarts.
    Sqlite,
}

/// A broker of `program` (see [`crate::service::locate`]) in `dir` on a free loopback port,
/// advertised as such. Not started yet.
pub fn broker(program: &Path, dir: &Path, storage: Storage) -> anyhow::Result<Service> {
    let port = free_port()?;
    let url = format!("tcp://127.0.0.1:{port}");
    let storage = match storage {
        Storage::Memory => "memory://tansu/",
        Storage::Sqlite => "sqlite://tansu.db",
    };
    let args = [
        "broker",
        "--listener-url",
        &url,
        "--advertised-listener-url",
        &url,
        "--storage-engine",
        storage,
    ]
    .map(str::to_owned)
    .to_vec();
    Ok(Service::new("tansu", program, args, dir, port))
}

/// What `program --version` says (empty when it says nothing).
pub async fn version(program: &Path) -> String {
    let output = Command::new(program).arg("--version").output().await;
    output
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
