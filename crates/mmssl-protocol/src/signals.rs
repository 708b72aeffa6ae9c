//! Stopping a run cleanly on a signal: SIGTERM (what Slurm sends before a time limit or a
//! preemption, and what `kill` sends) and the first Ctrl-C (SIGINT) set a flag that training
//! reads after every step ([`mmssl_train::Progress::stop_requested`]); the run then saves a
//! checkpoint where it is and `mmssl` exits with [`EXIT_INTERRUPTED`](crate::EXIT_INTERRUPTED). Running the same command
//! again (with `--resume` for `mmssl run`) continues to the same numbers as an uninterrupted
//! run. A second Ctrl-C quits at once (exit 130), without a checkpoint of the current epoch.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Installs the handlers (once per process; later calls do nothing). Where the handlers
/// cannot be installed, signals keep their default effect (the process ends at once) and a
/// warning says so.
pub fn install() {
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        use signal_hook::consts::{SIGINT, SIGTERM};
        // The conditional shutdown first: a Ctrl-C when the flag is already set quits.
        let installed = signal_hook::flag::register_conditional_shutdown(SIGINT, 130, flag.clone())
            .and_then(|_| signal_hook::flag::register(SIGINT, flag.clone()))
            .and_then(|_| signal_hook::flag::register(SIGTERM, flag.clone()));
        if let Err(e) = installed {
            eprintln!(
                "warning: cannot handle SIGTERM and Ctrl-C ({e}); a signal will end the run \
                 without a checkpoint of the current epoch"
            );
        }
        flag
    });
}

/// Whether a stop was asked for since [`install`].
pub fn requested() -> bool {
    FLAG.get().is_some_and(|f| f.load(Ordering::Relaxed))
}
