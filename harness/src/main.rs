//! The `qmig` command line: thin wrappers over library calls, mapped to exit codes.
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "qmig", version, about = "QEMU live-migration wire-protocol toolkit")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Placeholder until the subcommands land.
    Version,
}

fn main() {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Version => println!("qmig {}", env!("CARGO_PKG_VERSION")),
    }
}
