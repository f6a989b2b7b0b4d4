//! `countersign`: the server and its operator commands.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use countersign_server::app::App;
use countersign_server::clock::SystemClock;
use countersign_server::config::Config;
use countersign_server::flows::admin::{
    self, AuditQuery, CardRows, ImportFormat, ImportReport, NewCardRequest, NewRequestorRequest,
};
use countersign_server::storage::{Credential, OperatorRole};
use countersign_server::window::security::{NewQuestion, NewQuestions};
use indicatif::{ProgressBar, ProgressStyle};

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
    /// Devices enrolled for cards.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Enrolment codes a cardholder types into the app.
    #[command(subcommand, name = "enrolment-code")]
    EnrolmentCode(EnrolmentCodeCommand),
    /// Search the audit trail, oldest first, one JSON line per event.
    Audit(AuditArgs),
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
    /// List the requestors.
    List,
    /// Show a requestor and any rotation overlap in progress.
    Show { requestor_id: String },
    /// Issue a new API key (printed once); the current one keeps working for
    /// requestors.rotation_overlap_secs (24 h) or until revoke-previous-key.
    RotateKey { requestor_id: String },
    /// Issue a new callback secret (printed once); callbacks are signed with
    /// the current one too for the overlap, or until revoke-previous-secret.
    RotateSecret { requestor_id: String },
    /// End an API key rotation's overlap now.
    RevokePreviousKey { requestor_id: String },
    /// End a callback secret rotation's overlap now.
    RevokePreviousSecret { requestor_id: String },
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Create an operator; prints its API key once. The first admin key
    /// comes from here.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["support", "admin"], default_value = "admin")]
        role: String,
    },
    /// List the operators, revoked ones too.
    List,
    /// Revoke an operator's key at once.
    Revoke { operator_id: String },
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
    /// Register or update many cards from a CSV file (header line:
    /// acctNumber,language,email,phone) or JSON Lines ({"acctNumber": …}
    /// per line). A card already registered gets the row's language and
    /// contacts; running an import again changes nothing. Rows that fail
    /// are listed by line; the others are imported.
    Import {
        /// The file; `-` reads standard input.
        file: PathBuf,
        /// csv or jsonl; by default from the file's extension.
        #[arg(long, value_parser = ["csv", "jsonl"])]
        format: Option<String>,
    },
    /// Show a card (masked).
    Show { card_id: String },
    /// Set the language of messages to the cardholder. Omitted = removed
    /// (the browser's language is used, then English).
    Language {
        card_id: String,
        /// ja, en or sv.
        #[arg(long)]
        language: Option<String>,
    },
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
    /// Show a card's security questions (never the answers).
    Questions { card_id: String },
    /// List the devices enrolled for a card.
    Devices { card_id: String },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Revoke a device (a lost phone) for every card: its requests are
    /// refused and purchases waiting on it fall back to a one-time code.
    Revoke { device_id: String },
}

#[derive(Subcommand)]
enum EnrolmentCodeCommand {
    /// Create a single-use enrolment code for a card.
    Create {
        #[arg(long)]
        card: String,
    },
}

#[derive(clap::Args)]
struct AuditArgs {
    #[arg(long)]
    card: Option<String>,
    /// A purchase's acsTransID.
    #[arg(long)]
    acs_trans_id: Option<String>,
    #[arg(long)]
    device: Option<String>,
    /// operator:ID, cli, requestor:ID, device:ID or system.
    #[arg(long)]
    actor: Option<String>,
    /// The event type, e.g. challenge.ended.
    #[arg(long)]
    kind: Option<String>,
    /// E.g. ok, approved, expired.
    #[arg(long)]
    outcome: Option<String>,
    /// From this time on: RFC 3339 (2026-05-01T00:00:00Z) or milliseconds since the epoch.
    #[arg(long, value_parser = parse_time)]
    since: Option<i64>,
    /// Before this time (same forms).
    #[arg(long, value_parser = parse_time)]
    until: Option<i64>,
    /// Events per page (1 to 1000).
    #[arg(long, default_value_t = admin::DEFAULT_AUDIT_PAGE)]
    limit: u32,
    /// Continue after a page: the cursor the previous page printed.
    #[arg(long)]
    cursor: Option<String>,
    /// Follow the cursors to the last page.
    #[arg(long)]
    all: bool,
}

fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| "expected RFC 3339 (2026-05-01T00:00:00Z) or milliseconds since the epoch".into())
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// How the audit trail names what was done from the command line.
const CLI: &str = "cli";

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
            let done = admin::seal_callback_secrets(&app).await?;
            println!("database is at schema version {version}");
            if done.sealed > 0 {
                println!("sealed {} callback secret(s) stored in the clear by an earlier version", done.sealed);
            }
            if done.resealed > 0 {
                println!("sealed {} callback secret(s) again under the current master key", done.resealed);
            }
            Ok(())
        }
        Command::Requestor(command) => requestor(&app, command).await,
        Command::Operator(command) => operator(&app, command).await,
        Command::Card(command) => card(&app, command).await,
        Command::Device(DeviceCommand::Revoke { device_id }) => {
            let revoked = admin::revoke_device(&app, &device_id, CLI).await?;
            println!("device {} revoked", revoked.device_id);
            Ok(())
        }
        Command::EnrolmentCode(EnrolmentCodeCommand::Create { card }) => {
            let code = admin::create_enrolment_code(&app, &card, CLI).await?;
            println!("enrolment code: {}\nexpires:        {}", code.code, rfc3339(code.expires_at));
            Ok(())
        }
        Command::Audit(args) => audit(&app, args).await,
        Command::Messages { limit } => json_lines(&admin::messages(&app, limit, CLI).await?),
        Command::Pushes { device, limit } => json_lines(&admin::pushes(&app, device.as_deref(), limit, CLI).await?),
    }
}

async fn requestor(app: &App, command: RequestorCommand) -> anyhow::Result<()> {
    match command {
        RequestorCommand::Create { id, name } => {
            let r = admin::create_requestor(app, NewRequestorRequest { id, name }, CLI).await?;
            println!(
                "requestor:       {}\napi key:         {}\ncallback secret: {}",
                r.id, r.api_key, r.callback_secret
            );
            println!("(shown once: store them now)");
        }
        RequestorCommand::List => json_lines(&admin::requestors(app, CLI).await?)?,
        RequestorCommand::Show { requestor_id } => pretty(&admin::requestor(app, &requestor_id, CLI).await?)?,
        RequestorCommand::RotateKey { requestor_id } => {
            let r = admin::rotate_api_key(app, &requestor_id, CLI).await?;
            println!("requestor:        {}\napi key:          {}", r.requestor_id, r.api_key);
            println!("previous key until {} (or revoke-previous-key)", rfc3339(r.previous_key_valid_until));
            println!("(shown once: store it now)");
        }
        RequestorCommand::RotateSecret { requestor_id } => {
            let r = admin::rotate_callback_secret(app, &requestor_id, CLI).await?;
            println!("requestor:        {}\ncallback secret:  {}", r.requestor_id, r.callback_secret);
            println!(
                "previous secret also signs until {} (or revoke-previous-secret)",
                rfc3339(r.previous_callback_secret_valid_until)
            );
            println!("(shown once: store it now)");
        }
        RequestorCommand::RevokePreviousKey { requestor_id } => {
            admin::revoke_previous(app, &requestor_id, Credential::ApiKey, CLI).await?;
            println!("requestor {requestor_id}: the previous API key no longer works");
        }
        RequestorCommand::RevokePreviousSecret { requestor_id } => {
            admin::revoke_previous(app, &requestor_id, Credential::CallbackSecret, CLI).await?;
            println!("requestor {requestor_id}: callbacks are signed with the current secret only");
        }
    }
    Ok(())
}

async fn operator(app: &App, command: OperatorCommand) -> anyhow::Result<()> {
    match command {
        OperatorCommand::Create { name, role } => {
            let role = OperatorRole::parse(&role).expect("clap checked the role");
            let o = admin::create_operator(app, &name, role, CLI).await?;
            println!("operator: {} ({})\napi key:  {}\n(shown once: store it now)", o.id, o.role.as_str(), o.api_key);
            Ok(())
        }
        OperatorCommand::List => json_lines(&admin::operators(app, CLI).await?),
        OperatorCommand::Revoke { operator_id } => {
            let o = admin::revoke_operator(app, &operator_id, CLI).await?;
            println!("operator {} ({}) revoked", o.id, o.name);
            Ok(())
        }
    }
}

async fn card(app: &App, command: CardCommand) -> anyhow::Result<()> {
    match command {
        CardCommand::Create { number, email, phone, language } => {
            let acct_number = match number {
                Some(n) => n,
                None => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).context("reading the card number from standard input")?;
                    line.trim().to_owned()
                }
            };
            let card = admin::create_card(app, NewCardRequest { acct_number, language, email, phone }, CLI).await?;
            println!("card: {} ({})", card.card_id, card.masked_pan);
            Ok(())
        }
        CardCommand::Import { file, format } => import(app, &file, format.as_deref()).await,
        CardCommand::Show { card_id } => pretty(&admin::show_card(app, &card_id, CLI).await?),
        CardCommand::Language { card_id, language } => {
            pretty(&admin::set_language(app, &card_id, admin::CardLanguage { language }, CLI).await?)
        }
        CardCommand::Contacts { card_id, email, phone } => {
            pretty(&admin::set_contacts(app, &card_id, admin::Contacts { email, phone }, CLI).await?)
        }
        CardCommand::Unblock { card_id } => {
            let card = admin::unblock_card(app, &card_id, CLI).await?;
            println!("card {} ({}) unblocked", card.card_id, card.masked_pan);
            Ok(())
        }
        CardCommand::SecurityQuestions { card_id, question } => {
            let mut questions = Vec::with_capacity(question.len());
            for q in question {
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer).context("reading an answer from standard input")?;
                questions.push(NewQuestion { question: q, answer: answer.trim().to_owned() });
            }
            let view = admin::set_security_questions(app, &card_id, NewQuestions { questions }, CLI).await?;
            println!("card {}: {} security question(s)", view.card_id, view.questions.len());
            Ok(())
        }
        CardCommand::Questions { card_id } => pretty(&admin::security_questions(app, &card_id, CLI).await?),
        CardCommand::Devices { card_id } => json_lines(&admin::card_devices(app, &card_id, CLI).await?),
    }
}

/// Imports a file in batches, straight into the database the configuration
/// names (like every command here), with a progress bar on a terminal.
async fn import(app: &App, path: &Path, format: Option<&str>) -> anyhow::Result<()> {
    let format = match format {
        Some("csv") => ImportFormat::Csv,
        Some(_) => ImportFormat::JsonLines,
        None => ImportFormat::of_path(path).context("say --format csv or --format jsonl")?,
    };
    let (input, size): (Box<dyn BufRead>, Option<u64>) = if path == Path::new("-") {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let size = file.metadata().ok().map(|m| m.len());
        (Box::new(std::io::BufReader::new(file)), size)
    };
    let mut rows = CardRows::new(input, format).map_err(anyhow::Error::msg)?;
    let progress = match size {
        Some(bytes) => ProgressBar::new(bytes).with_style(
            ProgressStyle::with_template("{bar:40} {percent:>3}% {msg}").expect("a valid progress template"),
        ),
        None => ProgressBar::new_spinner(),
    };
    let mut report = ImportReport::default();
    loop {
        let batch: Vec<_> = rows.by_ref().take(admin::MAX_IMPORT_BATCH).collect();
        if batch.is_empty() {
            break;
        }
        report.add(admin::import_cards(app, batch, CLI).await?);
        progress.set_position(rows.bytes_read());
        progress.set_message(format!(
            "{} created, {} updated, {} unchanged, {} failed",
            report.created,
            report.updated,
            report.unchanged,
            report.failed.len()
        ));
    }
    progress.finish_and_clear();
    let imported = report.created + report.updated + report.unchanged;
    println!(
        "{imported} card(s) imported: {} created, {} updated, {} unchanged",
        report.created, report.updated, report.unchanged
    );
    for failure in &report.failed {
        println!("line {}: {}", failure.row, failure.error);
    }
    anyhow::ensure!(report.failed.is_empty(), "{} line(s) failed; the others were imported", report.failed.len());
    Ok(())
}

async fn audit(app: &App, args: AuditArgs) -> anyhow::Result<()> {
    let mut query = AuditQuery {
        card_id: args.card,
        acs_trans_id: args.acs_trans_id,
        device_id: args.device,
        actor: args.actor,
        kind: args.kind,
        outcome: args.outcome,
        from: args.since,
        until: args.until,
        cursor: args.cursor,
        limit: Some(args.limit),
    };
    loop {
        let page = admin::search_audit(app, query.clone(), CLI).await?;
        json_lines(&page.events)?;
        match page.next_cursor {
            Some(cursor) if args.all => query.cursor = Some(cursor),
            Some(cursor) => {
                eprintln!("more: --cursor {cursor}");
                return Ok(());
            }
            None => return Ok(()),
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

fn pretty<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn json_lines<T: serde::Serialize>(values: &[T]) -> anyhow::Result<()> {
    for value in values {
        println!("{}", serde_json::to_string(value)?);
    }
    Ok(())
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339()).unwrap_or_default()
}

async fn serve(app: App) -> anyhow::Result<()> {
    let listen = app.config.server.listen;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    // Listen for signals before serving: a stop asked for as soon as the
    // server answers must not meet the default handler (which kills).
    let stop_signal = shutdown_signal()?;
    let server = countersign_server::start(app.clone(), listener)?;
    tracing::info!(addr = %server.addr, public_url = %app.config.public_url(), "countersign is serving");
    // Key ids name keys without revealing them: which one is current, and
    // which previous ones a rotation still needs.
    let previous: Vec<&str> = app.secrets.previous_ids().collect();
    tracing::info!(current = app.secrets.current().id(), ?previous, "master keys");
    let stopper = server.stopper();
    tokio::spawn(async move {
        stop_signal.await;
        tracing::info!("shutting down");
        let _ = stopper.send(true);
    });
    let mut stopped = server.stopper().subscribe();
    let _ = stopped.wait_for(|s| *s).await;
    server.stop().await;
    Ok(())
}

/// Registers for SIGINT and SIGTERM now; the future resolves on either.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut interrupt, mut terminate) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
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
