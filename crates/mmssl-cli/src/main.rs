//! The `mmssl` binary. Everything lives in the `mmssl_cli` library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Keep freed buffers for reuse across training steps (see the function's documentation).
    mmssl_encoders::cpu::tune_allocator();
    mmssl_cli::run(mmssl_cli::Cli::parse())
}
