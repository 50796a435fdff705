//! What each subcommand does. `main` parses the command line and calls [`run`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cli::{Cli, Command, TokenCommand};
use crate::config::{Config, Overrides};
use crate::store::Store;
use crate::store::tokens::NewToken;
use crate::units::parse_duration;

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let listen = match &cli.command {
        Command::Serve { listen } => listen.clone(),
        _ => None,
    };
    let overrides = Overrides {
        data_dir: cli.data_dir.clone(),
        listen,
    };
    let config = Config::load(cli.config.as_deref(), std::env::vars(), &overrides)?;
    match cli.command {
        Command::Serve { .. } => serve(config),
        Command::Token { action } => token(config, action),
    }
}

fn open_store(config: Config) -> anyhow::Result<Store> {
    let dir = config.data_dir.display().to_string();
    Store::open(Arc::new(config)).with_context(|| format!("opening the data directory {dir}"))
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let daemon = crate::daemon::Daemon::start(config).await?;
        tracing::info!("symdepot listening on http://{}", daemon.addr());
        daemon.run_until_signal().await
    })
}

fn token(config: Config, action: TokenCommand) -> anyhow::Result<()> {
    let store = open_store(config)?;
    match action {
        TokenCommand::Create {
            permissions,
            user,
            expires,
            note,
        } => {
            let expires_in_ms = match expires.as_str() {
                "never" => None,
                s => Some(
                    parse_duration(s)
                        .with_context(|| {
                            format!("--expires {s:?}: expected e.g. 365d, 12h or never")
                        })?
                        .as_millis() as i64,
                ),
            };
            let new = NewToken {
                user: &user,
                permissions: &permissions,
                note: &note,
                expires_in_ms,
            };
            let (token, secret) = store.create_token(&new)?;
            println!(
                "token {} for {} with {}",
                token.id,
                token.user,
                token.permissions.join(", ")
            );
            if let Some(at) = token.expires_at {
                println!("expires {}", rfc3339(at));
            }
            println!("{secret}");
        }
        TokenCommand::List => {
            println!(
                "{:>5}  {:<16} {:<40} {:<25} {:<25} NOTE",
                "ID", "USER", "PERMISSIONS", "EXPIRES", "STATE"
            );
            for t in store.list_tokens()? {
                let expires = t.expires_at.map_or_else(|| "never".to_string(), rfc3339);
                let state = match t.revoked_at {
                    Some(at) => format!("revoked {}", rfc3339(at)),
                    None if t.expires_at.is_some_and(|e| e <= crate::store::now_ms()) => {
                        "expired".into()
                    }
                    None => "active".into(),
                };
                println!(
                    "{:>5}  {:<16} {:<40} {:<25} {:<25} {}",
                    t.id,
                    t.user,
                    t.permissions.join(","),
                    expires,
                    state,
                    t.note
                );
            }
        }
        TokenCommand::Revoke { id } => {
            if !store.revoke_token(id)? {
                bail!("there is no token with id {id}");
            }
            println!("token {id} revoked");
        }
    }
    Ok(())
}

/// RFC 3339 for milliseconds since the epoch.
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// How long shutdown waits for in-flight requests.
pub const DRAIN: Duration = Duration::from_secs(60);
