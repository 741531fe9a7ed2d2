//! The kmsd daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Arg, ArgAction, Args, Parser, Subcommand};
use kmsd::clock::SystemClock;
use kmsd::config::{self, Flags, Kind, LogFormat, Settings};
use kmsd::server;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for a bad command line or configuration (sysexits EX_USAGE).
const EX_USAGE: u8 = 64;

#[derive(Parser)]
#[command(name = "kmsd", version, about = "A self-hosted key management daemon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gRPC API. On first start, creates the data directory, database and root key.
    Serve(SettingFlags),
    /// Work with the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Re-wrap every key version under a new root key, in one transaction; no ciphertext changes. Stop the daemon
    /// first. Then start it with the new key (--root-key-file or KMSD_ROOT_KEY_FILE, or move the new file into
    /// place); the old key no longer opens the database.
    RotateRootKey {
        #[command(flatten)]
        settings: SettingFlags,
        /// The new root key file; created (0600) if it does not exist.
        #[arg(long)]
        new_root_key_file: PathBuf,
    },
    /// Issue a new token for an administrator when every administrator token is lost. Stop the daemon first; the
    /// root key must open the database. The principal is created as an administrator if it does not exist. Every
    /// step is recorded in the audit log as principal `kmsd`.
    RecoverAdmin {
        #[command(flatten)]
        settings: SettingFlags,
        /// The administrator to issue the token for.
        #[arg(long, default_value = "admin")]
        principal: String,
        /// Where to write the token (mode 0600; it must not exist) [default: <data-dir>/admin.token].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Copy the database to a new file, consistently, while the daemon serves (SQLite's online backup API).
    /// Restore by starting kmsd on a data directory holding the copy as kmsd.db and the same root key.
    Backup {
        #[command(flatten)]
        settings: SettingFlags,
        /// The new file to write (it must not exist).
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration (file, KMSD_* variables and these flags) and print the effective settings.
    Check(SettingFlags),
}

/// Flags override KMSD_* environment variables, which override the settings file, which overrides the defaults:
/// `--config`, and one flag per entry of `config::SETTINGS` (`--` and its key with dashes).
struct SettingFlags(Flags);

impl clap::FromArgMatches for SettingFlags {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = Flags::default();
        if let Some(path) = matches.get_one::<PathBuf>("config") {
            flags = flags.config(path);
        }
        for s in config::SETTINGS {
            match s.kind {
                Kind::Switch => {
                    if matches.get_flag(s.key) {
                        flags = flags.set(s.key, "true");
                    }
                }
                Kind::Text | Kind::Count => {
                    if let Some(value) = matches.get_one::<String>(s.key) {
                        flags = flags.set(s.key, value.as_str());
                    }
                }
            }
        }
        Ok(SettingFlags(flags))
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for SettingFlags {
    fn augment_args(command: clap::Command) -> clap::Command {
        let command = command.arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help(
                    "The settings file (TOML; see deploy/kmsd.toml.example) [default: <data-dir>/kmsd.toml if it \
                     exists; KMSD_CONFIG]",
                ),
        );
        config::SETTINGS.iter().fold(command, |command, s| {
            let arg = Arg::new(s.key)
                .long(s.flag())
                .help(format!("{} [{}]", s.help, s.var));
            command.arg(match s.kind {
                Kind::Switch => arg.action(ArgAction::SetTrue),
                Kind::Text | Kind::Count => arg.value_name("VALUE"),
            })
        })
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

impl SettingFlags {
    /// The settings, or exit status 64 after saying what is wrong.
    fn load_or_usage(self) -> Result<Settings, ExitCode> {
        self.load().map_err(|e| {
            eprintln!("kmsd: {e}");
            ExitCode::from(EX_USAGE)
        })
    }

    fn load(self) -> Result<Settings, config::ConfigError> {
        config::load(&self.0, &std::env::vars().collect())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config(ConfigCommand::Check(flags)) => match flags.load() {
            Ok(settings) => {
                match &settings.file {
                    Some(file) => println!("# {}: valid", file.display()),
                    None => println!("# no settings file; defaults, KMSD_* variables and flags"),
                }
                println!("{settings}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kmsd: {e}");
                ExitCode::from(EX_USAGE)
            }
        },
        Command::RotateRootKey {
            settings,
            new_root_key_file,
        } => {
            let settings = match settings.load_or_usage() {
                Ok(s) => s,
                Err(code) => return code,
            };
            match rotate_root_key(&settings, &new_root_key_file) {
                Ok(n) => {
                    println!(
                        "re-wrapped {n} secrets under {}; start kmsd with --root-key-file {} (the old key no longer opens the database)",
                        new_root_key_file.display(),
                        new_root_key_file.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("kmsd: root-key rotation failed, nothing changed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::RecoverAdmin {
            settings,
            principal,
            out,
        } => {
            let settings = match settings.load_or_usage() {
                Ok(s) => s,
                Err(code) => return code,
            };
            init_logging(&settings);
            let recovered = tokio::runtime::Runtime::new()
                .map_err(|e| e.to_string())
                .and_then(|runtime| {
                    runtime
                        .block_on(server::recover_admin(
                            &settings.config,
                            &principal,
                            out,
                            Arc::new(SystemClock),
                        ))
                        .map_err(|e| e.to_string())
                });
            match recovered {
                Ok(r) => {
                    println!(
                        "issued token {} for administrator {:?} into {} (mode 0600); the audit log records it",
                        r.token_id,
                        r.principal,
                        r.path.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("kmsd: recovery failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Backup { settings, out } => {
            let settings = match settings.load_or_usage() {
                Ok(s) => s,
                Err(code) => return code,
            };
            if let Some(url) = &settings.config.data.database_url {
                eprintln!(
                    "kmsd: backup copies the SQLite file; this kmsd keeps its data in {url}: back that up with \
                     PostgreSQL's own tools (pg_dump, or base backups with WAL archiving), and the root key apart"
                );
                return ExitCode::FAILURE;
            }
            let db = settings.config.database_path();
            match kmsd::storage::backup(&db, &out) {
                Ok(()) => {
                    println!("backed up {} to {}", db.display(), out.display());
                    println!(
                        "keep the root key ({}) safe too: the copy cannot be used without it",
                        settings.config.root_key_path().display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("kmsd: backup of {} failed: {e}", db.display());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve(flags) => {
            let settings = match flags.load_or_usage() {
                Ok(s) => s,
                Err(code) => return code,
            };
            init_logging(&settings);
            // Before any key material is loaded.
            let hardening = server::hardening::harden();
            for done in &hardening.done {
                tracing::info!("{done}");
            }
            for not_done in &hardening.not_done {
                tracing::warn!("{not_done}");
            }
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("kmsd: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(serve(settings))
        }
    }
}

fn rotate_root_key(settings: &Settings, new_path: &std::path::Path) -> Result<usize, String> {
    if let Some(url) = &settings.config.data.database_url {
        return Err(format!(
            "root-key rotation rewrites the SQLite file; this kmsd keeps its data in {url}, where it is not \
             supported yet"
        ));
    }
    let old_path = settings.config.root_key_path();
    if old_path == new_path {
        return Err("the new root key file must differ from the current one".into());
    }
    // No daemon may serve (and wrap new versions under the old key) while the database changes hands.
    let _lock =
        server::DataDirLock::acquire(&settings.config.data.dir).map_err(|e| e.to_string())?;
    let old = server::read_root_key(&old_path).map_err(|e| e.to_string())?;
    let (new, _) = server::read_or_create_root_key(new_path).map_err(|e| e.to_string())?;
    kmsd::kms::rotate_root_key(&settings.config.database_path(), &old, &new)
        .map_err(|e| e.to_string())
}

fn init_logging(settings: &Settings) {
    // The filter was validated with the rest of the settings.
    let filter = tracing_subscriber::EnvFilter::new(&settings.config.log.level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn serve(settings: Settings) -> ExitCode {
    if let Some(file) = &settings.file {
        tracing::info!(file = %file.display(), "settings file read");
    }
    // Listen for signals before serving: a SIGTERM the moment the port opens must still shut down gracefully.
    let stop = match shutdown_signal() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("kmsd: cannot listen for signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let running = match server::bind_and_start(&settings.config, Arc::new(SystemClock)).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kmsd: {e}");
            return ExitCode::FAILURE;
        }
    };
    stop.await;
    tracing::info!("shutting down");
    running.shutdown().await;
    ExitCode::SUCCESS
}

/// A future that completes on SIGTERM or SIGINT; the handlers are installed when this returns.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
