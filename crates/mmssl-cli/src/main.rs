//! The `mmssl` binary. Everything lives in the `mmssl_cli` library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Keep freed buffers for reuse across training steps (see the function's documentation).
    mmssl_encoders::cpu::tune_allocator();
    let argv = match mmssl_cli::expand_config(std::env::args().collect()) {
        Ok(argv) => argv,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    mmssl_cli::run(mmssl_cli::Cli::parse_from(argv))
}
