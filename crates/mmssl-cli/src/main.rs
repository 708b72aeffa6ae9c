//! The `mmssl` binary. Everything lives in the `mmssl_cli` library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    mmssl_cli::run(mmssl_cli::Cli::parse())
}
