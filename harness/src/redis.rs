//! Redis: the keys of a namespace, and a private server of its own.

use std::path::Path;

use anyhow::Context;

use crate::service::{free_port, Service};

async fn connect(url: &str) -> anyhow::Result<::redis::aio::MultiplexedConnection> {
    let client = ::redis::Client::open(url).with_context(|| format!("not a Redis URL: {url}"))?;
    client
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("cannot reach Redis at {url}"))
}

/// Deletes `keys`.
pub async fn delete(url: &str, keys: &[String]) -> anyhow::Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut redis = connect(url).await?;
    ::redis::cmd("DEL")
        .arg(keys)
        .query_async::<()>(&mut redis)
        .await
        .context("DEL")
}

/// Deletes every key of `namespace` (the prefix of a deployment's keys): to the deployment it
/// is a Redis that restarted empty. Returns how many there were.
pub async fn flush_namespace(url: &str, namespace: &str) -> anyhow::Result<usize> {
    let mut redis = connect(url).await?;
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{namespace}*"))
        .query_async(&mut redis)
        .await
        .context("KEYS")?;
    delete(url, &keys).await?;
    Ok(keys.len())
}

/// A private Redis in `dir` on a free port, without persistence: a restart is a Redis that came
/// back empty. Not started yet.
pub fn server(dir: &Path) -> anyhow::Result<Service> {
    let port = free_port()?;
    let args = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .map(str::to_owned)
    .to_vec();
    Ok(Service::new("redis", "redis-server", args, dir, port))
}
