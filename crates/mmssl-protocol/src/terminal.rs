//! What a run shows on a terminal: [`Terminal`], the [`Observer`] of the `mmssl` commands.

use crate::observe::{Observer, Phase};
use indicatif::{ProgressBar, ProgressStyle};
use mmssl_train::{EpochMetrics, Progress, StepReport};
use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Writes `text` and a newline to standard output (`error: false`) or standard error. An
/// output whose reader has gone (`mmssl experiment status EXP --json | head`) is not an
/// error: what was wanted was read, and the command ends quietly; any other failure to write
/// (a full disk behind a redirection) is returned.
pub fn print_line(text: &str, error: bool) -> std::io::Result<()> {
    let written = match error {
        false => writeln!(std::io::stdout().lock(), "{text}"),
        true => writeln!(std::io::stderr().lock(), "{text}"),
    };
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// An [`Observer`] for a terminal: a progress bar of each epoch's steps (loss, its terms,
/// pairs per second) where stderr is a terminal, plain lines elsewhere (a log file, a cluster
/// job, CI), an epoch line, the phases, notes and warnings, all on stderr. `quiet` keeps only
/// warnings and the announcement of a stop request. What the `mmssl` commands show.
///
/// It reports a stop request once [`signals::install`](crate::signals::install) has made
/// SIGTERM and Ctrl-C set one ([`Progress::stop_requested`]).
pub struct Terminal {
    bar: Option<ProgressBar>,
    quiet: bool,
    batch_size: usize,
    epoch_start: Instant,
    /// Steps of the epoch already done when the bar started (a resumed epoch).
    first_step: usize,
    /// Whether the stop request was announced.
    told: std::sync::atomic::AtomicBool,
}

impl Terminal {
    /// The display of a run with batches of `batch_size` (for its pairs per second); no bar
    /// and no progress lines when `quiet`.
    pub fn new(quiet: bool, batch_size: usize) -> Self {
        // A bar only on a terminal: elsewhere (nohup, a cluster job, CI) plain lines.
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:25}] {pos}/{len} steps, eta {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        Terminal {
            bar,
            quiet,
            batch_size,
            epoch_start: Instant::now(),
            first_step: 0,
            told: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn print(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => {
                let _ = print_line(&line, true);
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Terminal {
    fn step(&mut self, r: &StepReport<'_>) {
        let StepReport {
            epoch,
            step,
            steps,
            loss,
            terms,
        } = *r;
        if let Some(bar) = &self.bar {
            // Steps count from 1; a resumed epoch starts further on.
            if step == 1 || bar.length() != Some(steps as u64) {
                self.epoch_start = Instant::now();
                self.first_step = step.saturating_sub(1);
                bar.set_length(steps as u64);
                bar.set_position(step.saturating_sub(1) as u64);
                bar.set_prefix(format!("epoch {epoch}"));
            }
            bar.set_position(step as u64);
            let pairs = (step.saturating_sub(self.first_step) * self.batch_size) as f64;
            let rate = pairs / self.epoch_start.elapsed().as_secs_f64().max(1e-9);
            let mut msg = format!("loss {loss:.4}");
            for (name, v) in terms.iter().take(8) {
                msg += &format!(" {name} {v:.3}");
            }
            msg += &format!(" | {rate:.0} pairs/s");
            bar.set_message(msg);
        }
    }

    fn epoch(&mut self, m: &EpochMetrics) {
        if self.quiet {
            return;
        }
        let terms: Vec<String> = m.terms.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
        self.print(format!(
            "epoch {:>3}: train loss {:.4} ({}), valid loss {}, {:.0} pairs/s, {:.1} s waiting for data",
            m.epoch,
            m.train_loss,
            terms.join(", "),
            m.valid_loss.map_or("-".into(), |v| format!("{v:.4}")),
            m.pairs_per_second,
            m.data_wait_seconds
        ));
    }

    /// A SIGTERM or Ctrl-C was received ([`crate::signals`]); said once, even when quiet.
    fn stop_requested(&self) -> bool {
        let stop = crate::signals::requested();
        if stop && !self.told.swap(true, std::sync::atomic::Ordering::Relaxed) {
            self.print(
                "stop requested: finishing the current step and saving a checkpoint (Ctrl-C \
                 again quits at once)"
                    .to_string(),
            );
        }
        stop
    }
}

impl Observer for Terminal {
    fn phase(&mut self, phase: Phase) {
        if let (
            Some(bar),
            Phase::Evaluating { .. } | Phase::Neighbours | Phase::Analysing | Phase::Mapping,
        ) = (&self.bar, phase)
        {
            bar.finish_and_clear();
        }
        if self.quiet {
            return;
        }
        let line = match phase {
            Phase::Loading => "loading the data".to_string(),
            Phase::Pretraining => "pretraining".to_string(),
            Phase::Evaluating {
                modality,
                random_init,
            } => format!(
                "linear evaluation of modality {modality} ({})",
                if random_init {
                    "random initialisation"
                } else {
                    "pretrained"
                }
            ),
            Phase::Analysing => "similarity of the modalities".to_string(),
            Phase::Neighbours => "k-NN evaluation and cross-modal retrieval".to_string(),
            Phase::Mapping => "embedding maps (t-SNE)".to_string(),
            Phase::Explaining { random_init } => format!(
                "attribution maps of the {} model",
                if random_init {
                    "randomly initialised"
                } else {
                    "pretrained"
                }
            ),
        };
        self.print(line);
    }

    fn warning(&mut self, message: &str) {
        self.print(format!("warning: {message}"));
    }

    fn note(&mut self, message: &str) {
        if !self.quiet {
            self.print(message.to_string());
        }
    }
}
