//! MariaDB: a fresh database of a run on a server, and a private server of its own.

use std::path::Path;
use std::process::Stdio;

use anyhow::{bail, Context};
use sqlx::{Connection, MySqlConnection};
use tokio::process::Command;

use crate::logs;
use crate::service::{free_port, Service};

/// A database created for one run on the MariaDB server at `server` (`mysql://…`, no database).
#[derive(Clone, Debug)]
pub struct Database {
    server: String,
    name: String,
}

impl Database {
    /// Creates the database `name` on `server`, empty (dropped first if an earlier run left it).
    pub async fn fresh(server: &str, name: &str) -> anyhow::Result<Self> {
        let database = Self {
            server: server.trim_end_matches('/').to_owned(),
            name: name.to_owned(),
        };
        let mut conn = database.admin().await?;
        for statement in [
            format!("DROP DATABASE IF EXISTS `{name}`"),
            format!("CREATE DATABASE `{name}`"),
        ] {
            sqlx::query(&statement)
                .execute(&mut conn)
                .await
                .with_context(|| format!("{statement} on {}", database.server))?;
        }
        Ok(database)
    }

    async fn admin(&self) -> anyhow::Result<MySqlConnection> {
        MySqlConnection::connect(&self.server)
            .await
            .with_context(|| format!("cannot reach MariaDB at {}", self.server))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its `DATABASE_URL`.
    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    /// Drops it.
    pub async fn remove(self) -> anyhow::Result<()> {
        let mut conn = self.admin().await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS `{}`", self.name))
            .execute(&mut conn)
            .await?;
        Ok(())
    }
}

/// A private MariaDB in `dir`: its own data directory (installed here), port and socket, no
/// grant tables, `--no-defaults` so that the machine's `my.cnf` plays no part. Not started yet.
pub async fn server(dir: &Path) -> anyhow::Result<Service> {
    let data = dir.join("data");
    let install = dir.join("install.log");
    let status = Command::new("mariadb-install-db")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .args([
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--user=root",
        ])
        .stdout(Stdio::from(logs::append(&install)?))
        .stderr(Stdio::from(logs::append(&install)?))
        .status()
        .await
        .context("cannot run mariadb-install-db")?;
    if !status.success() {
        bail!("mariadb-install-db failed (see {})", install.display());
    }
    let port = free_port()?;
    let args = vec![
        "--no-defaults".to_owned(),
        format!("--datadir={}", data.display()),
        format!("--port={port}"),
        format!("--socket={}", dir.join("sock").display()),
        format!("--pid-file={}", dir.join("pid").display()),
        "--bind-address=127.0.0.1".to_owned(),
        "--skip-grant-tables".to_owned(),
        "--user=root".to_owned(),
    ];
    Ok(Service::new("mariadb", "mariadbd", args, dir, port))
}
