//! The `lsoftmax` command line. One module per subcommand; each exposes an `Args` struct
//! (clap) and `run(args) -> ExitCode`, which calls the subcommand's library function in
//! [`crate::commands`] (or [`crate::train`]), prints what it returns and maps errors to
//! exit statuses.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod demo;
pub mod gradcheck;
pub mod profile;
pub mod ptx;
pub mod run;
pub mod train;

/// Large-Margin Softmax kernels: reference, checks and tools.
#[derive(Debug, Parser)]
#[command(
    name = "lsoftmax",
    version,
    about = "Large-Margin Softmax kernels: reference, checks and tools. Without a command, runs the demo.",
    after_help = "Exit status: 0 success; 1 a check or a run failed; 2 bad input or arguments, or a missing tool (details in each command's --help)."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The default (also run with no arguments): gradient check, GPU kernels against the
    /// reference on the best backend available, and the toy model with its plot.
    Demo(demo::Args),
    /// Train a small network with the margin layer on the 8x8 digits and compare margins.
    Train(train::Args),
    /// Run the layer on .npy files (X, W, labels, optional dOut) and write float32 outputs.
    Run(run::Args),
    /// Check the margin layer's gradients against central finite differences (f64).
    Gradcheck(gradcheck::Args),
    /// Run one margin kernel K times on random data on the CUDA device, for Nsight
    /// (needs the cuda feature).
    Profile(profile::Args),
    /// Build the kernels to PTX and report ptxas resources per kernel; --check is the CI gate.
    Ptx(ptx::Args),
}

/// Entry point of the `lsoftmax` binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        None => demo::run(demo::Args::default()),
        Some(Command::Demo(args)) => demo::run(args),
        Some(Command::Train(args)) => train::run(args),
        Some(Command::Run(args)) => run::run(args),
        Some(Command::Gradcheck(args)) => gradcheck::run(args),
        Some(Command::Profile(args)) => profile::run(args),
        Some(Command::Ptx(args)) => ptx::run(args),
    }
}
