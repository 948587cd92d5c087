//! The `qmig` command line: thin wrappers over library calls, mapped to exit codes
//! (0 conformed, 1 violation or contradiction with the recording, 2 usage or harness
//! error, 3 only unsupported items).
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use qmig_harness::cli;

#[derive(Parser)]
#[command(name = "qmig", version, about = "QEMU live-migration wire-protocol toolkit")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// `--dump` views of analyze-migration.py.
#[derive(Clone, Copy, ValueEnum)]
enum Dump {
    /// The vmdesc JSON.
    Desc,
    /// Every device decoded field by field.
    State,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print every record of a stream file, `-` (stdin) or a case directory, with offsets.
    Inspect {
        /// Stream file, `-`, or case directory.
        path: PathBuf,
        /// Stable JSON dump (schema qmig-inspect/1).
        #[arg(long)]
        json: bool,
        /// List every page record instead of runs.
        #[arg(long)]
        pages: bool,
        /// analyze-migration.py views.
        #[arg(long, value_enum)]
        dump: Option<Dump>,
        /// Include RAM page contents (hex) in `--dump state`.
        #[arg(long)]
        memory: bool,
        /// Write one sparse file per RAM block plus desc.json and state.json.
        #[arg(long)]
        extract: Option<PathBuf>,
    },
    /// Replay a recorded case through the source and destination models.
    Replay {
        /// Case directory (case.json + stream or traces).
        case: PathBuf,
        #[command(flatten)]
        out: cli::OutputArgs,
    },
    /// Check a bare main stream (file or `-`) against a destination's settings.
    Check {
        /// Stream file or `-`.
        path: PathBuf,
        #[command(flatten)]
        sides: cli::SideArgs,
        #[command(flatten)]
        out: cli::OutputArgs,
    },
    /// Predict what a real QEMU pair will do, from settings alone.
    Preflight {
        #[command(flatten)]
        sides: cli::SideArgs,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Record a migration: a proxy between the source and the real destination that writes
    /// every connection, both directions, as QMIGTRC1 traces.
    Record {
        /// Where the source connects (tcp:HOST:PORT, HOST:PORT or unix:PATH; port 0 = any).
        #[arg(long)]
        listen: String,
        /// The real destination's incoming address.
        #[arg(long)]
        upstream: String,
        /// Output directory for conn<N>.qmtrace.
        #[arg(long)]
        out: PathBuf,
        /// Stop after this many seconds in all.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Stop when no connection has been open for this many ms (after the first; 0 = never).
        #[arg(long, default_value_t = 0)]
        idle_exit_ms: u64,
        /// Stop after this many connections have finished.
        #[arg(long)]
        max_conns: Option<usize>,
    },
    /// Stand in for the migration destination: accept a real source, answer its return
    /// path like a QEMU destination, record the traces, end with a verdict.
    Listen {
        /// tcp:HOST:PORT or unix:PATH.
        addr: String,
        /// Destination capabilities (QAPI names, comma separated).
        #[arg(long, value_delimiter = ',')]
        caps: Vec<String>,
        /// The source's capabilities, for the verdict (default: the same as --caps).
        #[arg(long, value_delimiter = ',')]
        src_caps: Option<Vec<String>>,
        /// Dialect (merged, precopy-initial-data, ...).
        #[arg(long, default_value = "merged")]
        dialect: String,
        /// QEMU version to behave like.
        #[arg(long, default_value = "10.0")]
        version: String,
        /// Output directory (traces, case.json, report.json).
        #[arg(long, default_value = "qmig-listen-out")]
        out: PathBuf,
        /// Overall timeout in seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Request this many pages once postcopy runs.
        #[arg(long, default_value_t = 0)]
        request_pages: u32,
        /// Misbehave: drop-switchover-ack, wrong-pong, bad-page-request, stall.
        #[arg(long, value_delimiter = ',')]
        misbehave: Vec<String>,
    },
    /// Replay a recorded source side into a real destination and say whether it behaved
    /// as recorded (compares the return path; with --dst-qmp also its final status).
    Send {
        /// Socket case directory (case.json + conn*.qmtrace).
        case: PathBuf,
        /// The destination's incoming address (tcp:HOST:PORT or unix:PATH).
        #[arg(long)]
        to: String,
        /// The destination's QMP socket, to read its final status.
        #[arg(long)]
        dst_qmp: Option<PathBuf>,
        /// Overall timeout in seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// List the rule catalogue.
    Rules {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let progress = std::io::stderr().is_terminal();
    let r = match cli.cmd {
        Cmd::Inspect { path, json, pages, dump, memory, extract } => {
            let dump = dump.map(|d| match d {
                Dump::Desc => cli::DumpKind::Desc,
                Dump::State => cli::DumpKind::State,
            });
            cli::inspect(&path, cli::InspectOpts { json, pages, dump, memory, extract, progress })
        }
        Cmd::Replay { case, out } => cli::replay(&case, &out),
        Cmd::Check { path, sides, out } => cli::check(&path, &sides, &out),
        Cmd::Preflight { sides, json } => cli::preflight(&sides, json),
        Cmd::Rules { json } => cli::rules(json),
        Cmd::Send { case, to, dst_qmp, timeout } => cli::send(&case, &to, dst_qmp.as_deref(), timeout),
        Cmd::Listen { addr, caps, src_caps, dialect, version, out, timeout, request_pages, misbehave } => {
            cli::listen(cli::ListenArgs { addr, caps, src_caps, dialect, version, out, timeout, request_pages, misbehave })
        }
        Cmd::Record { listen, upstream, out, timeout, idle_exit_ms, max_conns } => {
            cli::record(&listen, &upstream, &out, timeout, idle_exit_ms, max_conns)
        }
    };
    match r {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("qmig: {e}");
            ExitCode::from(2)
        }
    }
}
