//! `countersign`: the server and its operator commands.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use countersign_server::app::App;
use countersign_server::clock::SystemClock;
use countersign_server::config::Config;
use countersign_server::flows::admin::{self, NewCardRequest, NewRequestorRequest};
use countersign_server::storage::OperatorRole;
use countersign_server::window::security::{self, NewQuestion, NewQuestions};

#[derive(Parser)]
#[command(name = "countersign", version, about = "Push-approval authentication for card payments")]
struct Cli {
    /// TOML configuration file (every key is optional; see docs/configuration.md).
    #[arg(long, short, global = true, env = "COUNTERSIGN_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Print the effective configuration (defaults, file and environment) as TOML.
    Config,
    /// Copy the SQLite database to a new file while the server keeps
    /// serving (SQLite's online backup; PostgreSQL: use pg_dump).
    Backup {
        /// The new file to write (never overwritten).
        target: PathBuf,
    },
    /// Print the OpenAPI document of the HTTP API (as served at /openapi.json).
    Openapi,
    /// Merchants and 3DS servers allowed to send AReqs.
    #[command(subcommand)]
    Requestor(RequestorCommand),
    /// Operator API keys.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Cards.
    #[command(subcommand)]
    Card(CardCommand),
    /// Enrolment codes a cardholder types into the app.
    #[command(subcommand, name = "enrolment-code")]
    EnrolmentCode(EnrolmentCodeCommand),
    /// Emails and SMS recorded by the development outbox (they hold codes).
    Messages {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Pushes recorded by the default (outbox) notifier: for development.
    Pushes {
        #[arg(long)]
        device: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

#[derive(Subcommand)]
enum RequestorCommand {
    /// Create a requestor; prints its API key and callback secret once.
    Create {
        /// Its threeDSRequestorID.
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Create an operator; prints its API key once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["support", "admin"], default_value = "admin")]
        role: String,
    },
}

#[derive(Subcommand)]
enum CardCommand {
    /// Register a card. The number is read from --number or, to keep it out
    /// of shell history, from standard input.
    Create {
        #[arg(long)]
        number: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        phone: Option<String>,
        /// ja, en or sv.
        #[arg(long)]
        language: Option<String>,
    },
    /// Show a card (masked).
    Show { card_id: String },
    /// Replace a card's contacts (this card only). Omitted = removed.
    Contacts {
        card_id: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        phone: Option<String>,
    },
    /// Lift the block that too many wrong codes put on a card.
    Unblock { card_id: String },
    /// Replace a card's security questions (for registering a contact
    /// during a purchase). The answers are read from standard input, one
    /// line per --question, to keep them out of shell history. No
    /// --question removes them all.
    #[command(name = "security-questions")]
    SecurityQuestions {
        card_id: String,
        #[arg(long)]
        question: Vec<String>,
    },
}

#[derive(Subcommand)]
enum EnrolmentCodeCommand {
    /// Create a single-use enrolment code for a card.
    Create {
        #[arg(long)]
        card: String,
    },
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if matches!(cli.command, Some(Command::Openapi)) {
        // The document depends on the code only: no configuration, no database.
        print!("{}", countersign_server::http::openapi::document());
        return Ok(());
    }
    let config = Config::load(cli.config.as_deref(), std::env::vars())?;
    let command = cli.command.unwrap_or(Command::Serve);
    if matches!(command, Command::Config) {
        print!("{}", toml::to_string_pretty(&config)?);
        return Ok(());
    }
    if let Command::Backup { target } = &command {
        return backup(&config, target);
    }
    if matches!(command, Command::Serve) {
        init_logging();
    }
    let app = App::open(config, Arc::new(SystemClock))?;
    const CLI: &str = "cli";
    match command {
        Command::Serve => serve(app).await,
        Command::Config | Command::Openapi | Command::Backup { .. } => {
            unreachable!("answered before opening the database")
        }
        Command::Migrate => {
            // Opening the app applied any migration due.
            let version = match app.config.database() {
                countersign_server::config::Database::Sqlite(_) => {
                    countersign_server::storage::sqlite::latest_version()
                }
                countersign_server::config::Database::Postgres(_) => {
                    countersign_server::storage::postgres::latest_version()
                }
            };
            println!("database is at schema version {version}");
            Ok(())
        }
        Command::Requestor(RequestorCommand::Create { id, name }) => {
            let r = admin::create_requestor(&app, NewRequestorRequest { id, name }, CLI).await?;
            println!(
                "requestor:       {}\napi key:         {}\ncallback secret: {}",
                r.id, r.api_key, r.callback_secret
            );
            println!("(shown once: store them now)");
            Ok(())
        }
        Command::Operator(OperatorCommand::Create { name, role }) => {
            let role = OperatorRole::parse(&role).expect("clap checked the role");
            let o = admin::create_operator(&app, &name, role, CLI).await?;
            println!("operator: {} ({})\napi key:  {}\n(shown once: store it now)", o.id, o.role.as_str(), o.api_key);
            Ok(())
        }
        Command::Card(CardCommand::Create { number, email, phone, language }) => {
            let acct_number = match number {
                Some(n) => n,
                None => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).context("reading the card number from standard input")?;
                    line.trim().to_owned()
                }
            };
            let card = admin::create_card(&app, NewCardRequest { acct_number, language, email, phone }, CLI).await?;
            println!("card: {} ({})", card.card_id, card.masked_pan);
            Ok(())
        }
        Command::Card(CardCommand::Show { card_id }) => {
            println!("{}", serde_json::to_string_pretty(&admin::card(&app, &card_id).await?)?);
            Ok(())
        }
        Command::EnrolmentCode(EnrolmentCodeCommand::Create { card }) => {
            let code = admin::create_enrolment_code(&app, &card, CLI).await?;
            let expires =
                chrono::DateTime::from_timestamp_millis(code.expires_at).map(|t| t.to_rfc3339()).unwrap_or_default();
            println!("enrolment code: {}\nexpires:        {expires}", code.code);
            Ok(())
        }
        Command::Card(CardCommand::Contacts { card_id, email, phone }) => {
            let card = admin::set_contacts(&app, &card_id, admin::Contacts { email, phone }, CLI).await?;
            println!("{}", serde_json::to_string_pretty(&card)?);
            Ok(())
        }
        Command::Card(CardCommand::Unblock { card_id }) => {
            let card = admin::unblock_card(&app, &card_id, CLI).await?;
            println!("card {} ({}) unblocked", card.card_id, card.masked_pan);
            Ok(())
        }
        Command::Card(CardCommand::SecurityQuestions { card_id, question }) => {
            let mut questions = Vec::with_capacity(question.len());
            for q in question {
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer).context("reading an answer from standard input")?;
                questions.push(NewQuestion { question: q, answer: answer.trim().to_owned() });
            }
            let view = security::provision(&app, &card_id, NewQuestions { questions }, CLI).await?;
            println!("card {}: {} security question(s)", view.card_id, view.questions.len());
            Ok(())
        }
        Command::Messages { limit } => {
            anyhow::ensure!(
                app.uses_message_outbox(),
                "no channel delivers to the message outbox (see [email] and [sms])"
            );
            for message in app.storage.outbox_messages(limit).await? {
                println!("{}", serde_json::to_string(&message)?);
            }
            Ok(())
        }
        Command::Pushes { device, limit } => {
            for push in app.storage.outbox_pushes(device.as_deref(), limit).await? {
                println!("{}", serde_json::to_string(&push)?);
            }
            Ok(())
        }
    }
}

/// Works on the file alone: no migration, no workers, nothing written to
/// the live database.
fn backup(config: &Config, target: &std::path::Path) -> anyhow::Result<()> {
    use countersign_server::config::Database;
    use countersign_server::storage::sqlite::backup;
    let source = match config.database() {
        Database::Sqlite(path) => path,
        Database::Postgres(_) => anyhow::bail!(
            "`backup` copies the SQLite file; back PostgreSQL up with its own tools (pg_dump, or \
             base backups with WAL archiving; see docs/operations.md)"
        ),
    };
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let report = backup::backup(&source, target, |copied, total| {
        if interactive {
            eprint!("\rcopied {copied} of {total} pages");
        }
    })?;
    if interactive {
        eprintln!();
    }
    println!(
        "backup: {} ({} bytes, {} pages, schema version {}); integrity check ok",
        report.path.display(),
        report.bytes,
        report.pages,
        report.schema_version
    );
    Ok(())
}

async fn serve(app: App) -> anyhow::Result<()> {
    let listen = app.config.server.listen;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let server = countersign_server::start(app.clone(), listener)?;
    tracing::info!(addr = %server.addr, public_url = %app.config.public_url(), "countersign is serving");
    let stopper = server.stopper();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stopper.send(true);
    });
    let mut stopped = server.stopper().subscribe();
    let _ = stopped.wait_for(|s| *s).await;
    server.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Readable logs in a terminal, JSON otherwise (`RUST_LOG` filters).
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,tower_http=info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        builder.init();
    } else {
        builder.json().init();
    }
}
