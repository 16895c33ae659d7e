use std::process::ExitCode;

use clap::Parser;

use chat_system::cli::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    // A missing .env file is normal; its variables are read by clap below.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    cli::init_tracing(cli.config.log_format);
    match cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chat-system: {err:#}");
            ExitCode::FAILURE
        }
    }
}
