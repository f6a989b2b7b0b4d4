//! `countersign-device`: a phone on the command line. It enrols with a
//! Countersign server, lists the purchases waiting for approval, and
//! approves or denies them with a software key, through the same client
//! library the mobile apps use.

mod commands;
mod display;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use countersign_core::client::ClientError;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(
    name = "countersign-device",
    version,
    about = "A simulated Countersign phone: enrol a card, then approve or deny its online purchases"
)]
struct Cli {
    /// The device's state file: server URL, device id, enrolled cards and
    /// this device's PRIVATE KEY (keep the file private).
    #[arg(long, global = true, env = "COUNTERSIGN_DEVICE_STATE", default_value = "./device.json")]
    state: PathBuf,
    /// Print machine-readable JSON on stdout (and errors as JSON on stderr).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enrol a card on this device with the enrolment code from the issuer.
    /// Run again with another code to add a further card.
    Enrol {
        /// The Countersign server, e.g. http://localhost:8080 (only needed
        /// the first time).
        #[arg(long)]
        server: Option<String>,
        /// The enrolment code (spaces and dashes are ignored).
        #[arg(long)]
        code: String,
        /// The name this device shows in the issuer's lists.
        #[arg(long, default_value = "Countersign simulator")]
        name: String,
        #[arg(long, value_enum, default_value_t = PlatformArg::Android)]
        platform: PlatformArg,
        /// The push token the server should notify.
        #[arg(long)]
        push_token: Option<String>,
        /// Enrol with notifications off (purchases fall back to one-time codes).
        #[arg(long)]
        no_notifications: bool,
    },
    /// List the purchases waiting for this device's answer.
    Pending,
    /// Show one purchase in full.
    Show { id: String },
    /// Approve a purchase.
    Approve {
        id: String,
        /// The number the checkout page shows, when the purchase asks for one.
        #[arg(long)]
        number: Option<u8>,
    },
    /// Deny a purchase.
    Deny {
        id: String,
        #[arg(long, value_enum, default_value_t = ReasonArg::NotMe)]
        reason: ReasonArg,
    },
    /// Change where and whether the server sends push notifications.
    PushSettings {
        #[arg(long, conflicts_with = "clear_token")]
        token: Option<String>,
        /// Forget the push token.
        #[arg(long)]
        clear_token: bool,
        #[arg(long, value_enum)]
        notifications: Option<OnOff>,
    },
    /// Unenrol one card, or without --card the whole device (which also
    /// deletes the state file and its key).
    Unenrol {
        #[arg(long)]
        card: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PlatformArg {
    Ios,
    Android,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ReasonArg {
    /// "This wasn't me": a suspected fraud.
    NotMe,
    /// The purchase is mine but I no longer want it.
    Cancelled,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OnOff {
    On,
    Off,
}

/// What a command prints: a sentence or table for people, JSON for tests.
struct Report {
    human: String,
    json: Value,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(&cli.state, cli.command) {
        Ok(report) => {
            if cli.json {
                println!("{}", report.json);
            } else {
                print!("{}", report.human);
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            if cli.json {
                eprintln!("{}", error_json(&error));
            } else {
                eprintln!("error: {error:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// `{"error": {"kind", "message", ["status", "code"]}}`, where `kind` names
/// the client error (`expired`, `not_enrolled`, …) or is `failed`.
fn error_json(error: &anyhow::Error) -> Value {
    let message = format!("{error:#}");
    let kind = match error.downcast_ref::<ClientError>() {
        None => "failed",
        Some(ClientError::ServerRefused { status, code, .. }) => {
            return json!({ "error": { "kind": "server_refused", "status": status, "code": code, "message": message } });
        }
        Some(ClientError::Network(_)) => "network",
        Some(ClientError::Expired) => "expired",
        Some(ClientError::AlreadyDecided) => "already_decided",
        Some(ClientError::NotEnrolled) => "not_enrolled",
        Some(ClientError::KeyUnavailable(_)) => "key_unavailable",
        Some(ClientError::BadPayload(_)) => "bad_payload",
        Some(ClientError::BadResponse(_)) => "bad_response",
        Some(ClientError::LocalStorage(_)) => "local_storage",
    };
    json!({ "error": { "kind": kind, "message": message } })
}
