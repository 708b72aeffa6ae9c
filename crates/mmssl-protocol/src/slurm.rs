//! Grids on a Slurm cluster: one job-array task per unfinished cell, and an aggregation job
//! that runs after the array (`--dependency=afterany`). Slurm is the scheduler; nothing here
//! schedules anything itself.
//!
//! [`Grid::submit_slurm`] writes, under `EXP/slurm/`:
//!
//! - `cells/<k>.toml`: the complete run configuration of every cell `k` of the grid;
//! - `array-<stamp>.txt`: the cells of this submission, one index per line (array task `i`
//!   runs the cell on line `i + 1`);
//! - `array-<stamp>.sbatch`: the job-array script; each task runs
//!   `mmssl experiment --grid GRID --out EXP --cell K`, which resumes the cell from its
//!   checkpoint when it has one (a requeued task continues where it stopped). The script
//!   passes SIGTERM on to `mmssl` (Slurm sends it `--signal=B:TERM@N`, `N` seconds before
//!   the time limit, [`SlurmResources::signal_lead`], 120 by default; and on preemption); `mmssl` finishes its step, saves a checkpoint and
//!   exits with [`EXIT_INTERRUPTED`], and the script then requeues its task
//!   (`scontrol requeue`), which resumes from that checkpoint;
//! - `aggregate-<stamp>.sbatch`: `mmssl experiment --grid GRID --out EXP --aggregate-only`,
//!   which writes `results.csv`, `results.md` and the figures (with every resource line that
//!   applies to it: partition, memory, time, account, QOS, the extra lines);
//! - `jobs.json`: every submission's job ids and cells, appended to.
//!
//! Both scripts run the `[slurm] setup` lines (module loads, an environment's activation)
//! before `mmssl`, and put the `wrapper` command (a container's `apptainer exec ...`) before it.
//!
//! Then it submits both with `sbatch` (unless dry-run), all or nothing: the array is recorded
//! in `jobs.json` as soon as it is queued, and if the aggregation job is then refused, the
//! array is cancelled (`scancel`), or, where that fails too, left recorded (so that a new
//! submission does not queue its cells twice) with the commands that finish the submission. Cells with `eval.json` are finished and
//! not submitted; neither are cells whose run folder is locked by a running task, nor those
//! whose task of an earlier submission runs or waits in Slurm's queue (`squeue`). Submitting
//! again after failures therefore submits exactly what is left.

use crate::error::{ProtocolError, Result};
use crate::folder::write_atomic;
use crate::grid::{Grid, GridOptions};
use crate::observe::Observer;
pub use crate::records::{SlurmResources, Submission};
use crate::registry::Registry;
use crate::status::{CellState, SlurmTools, status_of};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The exit code of `mmssl` for a run stopped by SIGTERM or Ctrl-C after saving its
/// checkpoint (`EX_TEMPFAIL`); the array tasks requeue themselves on it.
pub const EXIT_INTERRUPTED: u8 = 75;

/// How [`Grid::submit_slurm`] submits: the resources (over the grid file's `[slurm]`), the
/// programs, and whether to submit at all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SlurmOptions {
    /// Resources; each key set here overrides the grid's ([`SlurmResources::overridden_by`]).
    pub resources: SlurmResources,
    /// The `mmssl` binary the tasks run (default: the running one).
    pub mmssl: Option<PathBuf>,
    /// The `sbatch` command (default: `sbatch` on the `PATH`).
    pub sbatch: Option<PathBuf>,
    /// Write the scripts without submitting them.
    pub dry_run: bool,
}

/// Quotes `text` for a POSIX shell (single quotes; a single quote becomes `'\''`).
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn quote_path(p: &Path) -> String {
    shell_quote(&p.to_string_lossy())
}

impl SlurmOptions {
    fn mmssl(&self) -> Result<PathBuf> {
        match &self.mmssl {
            Some(p) => Ok(p.clone()),
            None => std::env::current_exe().map_err(|e| ProtocolError::InvalidSetting {
                field: "slurm.mmssl".into(),
                value: "(the running binary)".into(),
                reason: format!("cannot find the running binary ({e}); name it"),
            }),
        }
    }
}

impl Grid {
    /// Writes the job-array and aggregation scripts of the grid's unfinished cells under
    /// `out/slurm/` and, unless [`SlurmOptions::dry_run`], submits them with `sbatch` (the aggregation job
    /// after the array, `--dependency=afterany`). `grid_file` is the grid's file, which the
    /// jobs read again. See the module documentation for the files.
    ///
    /// Folders made with other settings are refused as by [`Grid::run`] (or moved aside with
    /// [`GridOptions::rerun_changed`]).
    pub fn submit_slurm(
        &self,
        grid_file: &Path,
        out: &Path,
        registry: &Registry,
        options: &SlurmOptions,
        grid_options: GridOptions,
        observer: &mut dyn Observer,
    ) -> Result<Submission> {
        let resources = self.slurm.overridden_by(&options.resources);
        resources.check()?;
        if resources.gpus.is_some() && self.base.backend == crate::config::BackendKind::Cpu {
            observer.warning(
                "GPUs are requested for every cell, but the grid's runs use the CPU backend: \
                 set `backend = \"cuda\"` (or \"wgpu\") in [settings] to use them",
            );
        }
        let cells = self.checked_cells(out, registry, grid_options, observer)?;
        let dir = out.join("slurm");
        let cell_dir = dir.join("cells");
        std::fs::create_dir_all(dir.join("logs")).map_err(|e| ProtocolError::write(&dir, e))?;
        std::fs::create_dir_all(&cell_dir).map_err(|e| ProtocolError::write(&cell_dir, e))?;
        let mut submitted = Vec::new();
        let mut skipped = Vec::new();
        // Finished cells, and those running or waiting in Slurm's queue (from an earlier
        // submission) or running here, are not submitted again.
        let records = crate::grid::cell_records(&cells);
        let status = status_of(out, records, &SlurmTools::default());
        for ((k, cell), now) in cells.iter().enumerate().zip(&status.cells) {
            let mut config = cell.config.clone();
            config.absolute_paths();
            let text = toml::to_string(&config)
                .map_err(|e| ProtocolError::Config(format!("cell {k}: {e}")))?;
            write_atomic(&cell_dir.join(format!("{k}.toml")), &text)?;
            match now.state {
                CellState::Finished | CellState::Running | CellState::Pending => {
                    let job = now.job.as_ref().map(|j| format!(" as {j}"));
                    skipped.push((
                        k,
                        format!("{}{}", now.state.name(), job.unwrap_or_default()),
                    ));
                }
                _ => submitted.push(k),
            }
        }
        let stamp = submission_stamp();
        let list = dir.join(format!("array-{stamp}.txt"));
        let lines: Vec<String> = submitted.iter().map(|k| k.to_string()).collect();
        write_atomic(&list, &(lines.join("\n") + "\n"))?;
        let mmssl = options.mmssl()?;
        let grid_file =
            std::path::absolute(grid_file).map_err(|e| ProtocolError::read(grid_file, e))?;
        let out_abs = std::path::absolute(out).map_err(|e| ProtocolError::read(out, e))?;
        let logs = out_abs.join("slurm").join("logs");
        let name = out_abs
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "grid".into());
        let cap = resources
            .max_parallel
            .map(|n| format!("%{n}"))
            .unwrap_or_default();
        let aggregate_resources = resources.aggregate_lines().join("\n");
        let setup = match resources.setup.is_empty() {
            true => String::new(),
            false => format!(
                "# The task's environment ([slurm] setup).\n{}\n",
                resources.setup.join("\n")
            ),
        };
        let mmssl = match &resources.wrapper {
            Some(w) => format!("{w} {}", quote_path(&mmssl)),
            None => quote_path(&mmssl),
        };
        let lead = resources
            .signal_lead
            .unwrap_or(crate::records::DEFAULT_SIGNAL_LEAD);
        let resources = resources.lines().join("\n");
        let array_script = dir.join(format!("array-{stamp}.sbatch"));
        let array_text = format!(
            "#!/bin/bash\n\
             # mmssl grid {grid}: one task per unfinished cell (written by mmssl experiment).\n\
             #SBATCH --job-name=mmssl-{name}\n\
             #SBATCH --array=0-{last}{cap}\n\
             #SBATCH --output={logs}/%A_%a.out\n\
             #SBATCH --open-mode=append\n\
             #SBATCH --requeue\n\
             #SBATCH --signal=B:TERM@{lead}\n\
             {resources}\n\
             set -uo pipefail\n\
             {setup}\
             CELL=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" {list}) || exit 2\n\
             TASK=\"${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}\"\n\
             # SIGTERM (the warning before the time limit, or a preemption) goes on to mmssl,\n\
             # which finishes its step, saves a checkpoint and exits {code}; the task is then\n\
             # requeued and continues from that checkpoint.\n\
             {mmssl} experiment --grid {gridq} --out {out} --cell \"$CELL\" --quiet &\n\
             PID=$!\n\
             trap 'kill -TERM \"$PID\" 2>/dev/null' TERM\n\
             wait \"$PID\"; STATUS=$?\n\
             # A trapped signal ends `wait` early: wait again until mmssl has exited.\n\
             while kill -0 \"$PID\" 2>/dev/null; do wait \"$PID\"; STATUS=$?; done\n\
             if [ \"$STATUS\" -eq {code} ]; then\n\
             \x20   echo \"mmssl: cell $CELL stopped with a checkpoint; requeueing $TASK\"\n\
             \x20   scontrol requeue \"$TASK\" || true\n\
             fi\n\
             exit \"$STATUS\"\n",
            grid = grid_file.display(),
            last = submitted.len().saturating_sub(1),
            logs = logs.display(),
            list =
                quote_path(&std::path::absolute(&list).map_err(|e| ProtocolError::read(&list, e))?),
            gridq = quote_path(&grid_file),
            out = quote_path(&out_abs),
            code = EXIT_INTERRUPTED,
        );
        write_atomic(&array_script, &array_text)?;
        let aggregate_script = dir.join(format!("aggregate-{stamp}.sbatch"));
        let aggregate_text = format!(
            "#!/bin/bash\n\
             # mmssl grid {grid}: results.csv, results.md and figures of the finished cells.\n\
             #SBATCH --job-name=mmssl-{name}-aggregate\n\
             #SBATCH --output={logs}/aggregate-%j.out\n\
             {aggregate_resources}\n\
             set -euo pipefail\n\
             {setup}\
             exec {mmssl} experiment --grid {gridq} --out {out} --aggregate-only --quiet\n",
            grid = grid_file.display(),
            logs = logs.display(),
            gridq = quote_path(&grid_file),
            out = quote_path(&out_abs),
        );
        write_atomic(&aggregate_script, &aggregate_text)?;
        let mut submission = Submission {
            stamp,
            cells: submitted,
            skipped,
            array_script,
            aggregate_script,
            array_job: None,
            aggregate_job: None,
        };
        if options.dry_run {
            return Ok(submission);
        }
        let sbatch = options
            .sbatch
            .clone()
            .unwrap_or_else(|| PathBuf::from("sbatch"));
        let jobs = dir.join("jobs.json");
        let mut dependency = Vec::new();
        if !submission.cells.is_empty() {
            let id = run_sbatch(&sbatch, &[], &submission.array_script)?;
            dependency = vec![format!("--dependency=afterany:{id}")];
            submission.array_job = Some(id);
            // Recorded at once: whatever happens next, the queued cells are known.
            record(&jobs, &submission, false)?;
        }
        match run_sbatch(&sbatch, &dependency, &submission.aggregate_script) {
            Ok(id) => submission.aggregate_job = Some(id),
            Err(refused) => {
                let Some(array) = submission.array_job.clone() else {
                    return Err(refused);
                };
                return Err(undo_array(&sbatch, &array, &jobs, &submission, refused));
            }
        }
        record(&jobs, &submission, submission.array_job.is_some())?;
        Ok(submission)
    }
}

/// `sbatch --parsable ARGS SCRIPT`; the job id.
fn run_sbatch(sbatch: &Path, args: &[String], script: &Path) -> Result<String> {
    let command = format!(
        "{} --parsable {} {}",
        sbatch.display(),
        args.join(" "),
        script.display()
    );
    let output = Command::new(sbatch)
        .arg("--parsable")
        .args(args)
        .arg(script)
        .output()
        .map_err(|e| ProtocolError::Slurm {
            command: command.clone(),
            reason: format!("cannot run it ({e}); is Slurm installed on this machine?"),
        })?;
    if !output.status.success() {
        return Err(ProtocolError::Slurm {
            command,
            reason: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    // `--parsable` prints `JOBID` or `JOBID;CLUSTER`.
    let text = String::from_utf8_lossy(&output.stdout);
    let id = text.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(ProtocolError::Slurm {
            command,
            reason: format!("unexpected output `{}`", text.trim()),
        });
    }
    Ok(id)
}

/// The aggregation job of a submission was `refused` after its array `array` was queued:
/// cancels the array (`scancel`, found beside `sbatch`) and removes it from `jobs`, so that
/// nothing of the submission stays; where the cancel fails, the array stays recorded and the
/// error says how to finish the submission by hand.
fn undo_array(
    sbatch: &Path,
    array: &str,
    jobs: &Path,
    submission: &Submission,
    refused: ProtocolError,
) -> ProtocolError {
    let scancel = match sbatch.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) if dir.join("scancel").is_file() => dir.join("scancel"),
        _ => PathBuf::from("scancel"),
    };
    let reason = match &refused {
        ProtocolError::Slurm { reason, .. } => reason.clone(),
        other => other.to_string(),
    };
    let cancelled = Command::new(&scancel)
        .arg(array)
        .output()
        .is_ok_and(|o| o.status.success());
    let (command, outcome) = if cancelled && forget(jobs, array).is_ok() {
        (
            format!("sbatch {}", submission.aggregate_script.display()),
            format!(
                "the job array {array} it would follow was cancelled, so nothing of this \
                 submission is queued; fix the cause and submit again"
            ),
        )
    } else {
        (
            format!(
                "sbatch --dependency=afterany:{array} {}",
                submission.aggregate_script.display()
            ),
            format!(
                "the job array {array} could not be cancelled and stays queued (recorded in \
                 {}, so a new submission does not queue its cells again); once the cause is \
                 fixed, submit the aggregation by hand: sbatch --dependency=afterany:{array} \
                 {}",
                jobs.display(),
                submission.aggregate_script.display()
            ),
        )
    };
    ProtocolError::Slurm {
        command,
        reason: format!("the aggregation job was refused ({reason}); {outcome}"),
    }
}

/// Removes the submission of the job array `array` from the record `path`.
fn forget(path: &Path, array: &str) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| ProtocolError::read(path, e))?;
    let mut all: Vec<Submission> =
        serde_json::from_str(&text).map_err(|e| ProtocolError::read(path, e))?;
    all.retain(|s| s.array_job.as_deref() != Some(array));
    let text = serde_json::to_string_pretty(&all).map_err(|e| ProtocolError::write(path, e))?;
    write_atomic(path, &text)
}

/// Appends `submission` to the submissions recorded in `path` or, with `update`, replaces
/// the last one recorded (the same submission, recorded when its array was queued).
fn record(path: &Path, submission: &Submission, update: bool) -> Result<()> {
    let mut all: Vec<Submission> = match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| ProtocolError::read(path, e))?,
        Err(_) => Vec::new(),
    };
    if update && all.last().is_some_and(|s| s.stamp == submission.stamp) {
        all.pop();
    }
    all.push(submission.clone());
    let text = serde_json::to_string_pretty(&all).map_err(|e| ProtocolError::write(path, e))?;
    write_atomic(path, &text)
}

/// The current UTC time as `YYYYMMDD-HHMMSS-NNN` (milliseconds, so two submissions in one
/// second get distinct files).
fn submission_stamp() -> String {
    let now = std::time::SystemTime::now();
    let millis = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_millis());
    format!("{}-{millis:03}", crate::folder::utc_stamp(now))
}

impl Submission {
    /// What `mmssl experiment --executor slurm` prints: the cells to run and those skipped
    /// (with why), the job ids and scripts, and with `dry_run` the scripts themselves.
    pub fn summary(&self, dry_run: bool) -> String {
        let s = self;
        let mut text = format!(
            "{} cells to run ({:?}), {} skipped{}\n",
            s.cells.len(),
            s.cells,
            s.skipped.len(),
            if s.skipped.is_empty() {
                String::new()
            } else {
                let reasons: Vec<String> = s
                    .skipped
                    .iter()
                    .map(|(k, why)| format!("{k} {why}"))
                    .collect();
                format!(" ({})", reasons.join(", "))
            }
        );
        if dry_run {
            for script in [&s.array_script, &s.aggregate_script] {
                let body = std::fs::read_to_string(script).unwrap_or_default();
                text += &format!("\n# {}\n{body}", script.display());
            }
            text += "\ndry run: nothing submitted\n";
        } else {
            if let Some(id) = &s.array_job {
                text += &format!("job array {id}: {}\n", s.array_script.display());
            }
            if let Some(id) = &s.aggregate_job {
                text += &format!(
                    "aggregation job {id} (after the array): {}\n",
                    s.aggregate_script.display()
                );
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn resources_become_sbatch_lines() {
        let o = SlurmResources {
            partition: Some("gpu".into()),
            gpus: Some(1),
            cpus: Some(8),
            mem: Some("32G".into()),
            time: Some("12:00:00".into()),
            account: Some("lab".into()),
            extra: vec!["--qos=long".into()],
            ..Default::default()
        };
        assert_eq!(
            o.lines(),
            [
                "#SBATCH --partition=gpu",
                "#SBATCH --gres=gpu:1",
                "#SBATCH --cpus-per-task=8",
                "#SBATCH --mem=32G",
                "#SBATCH --time=12:00:00",
                "#SBATCH --account=lab",
                "#SBATCH --qos=long",
            ]
        );
        assert_eq!(
            o.aggregate_lines(),
            [
                "#SBATCH --partition=gpu",
                "#SBATCH --mem=32G",
                "#SBATCH --time=12:00:00",
                "#SBATCH --account=lab",
                "#SBATCH --qos=long",
            ]
        );
        assert!(SlurmResources::default().lines().is_empty());
        // Flags override the grid's keys one by one; extra lines add up.
        let flags = SlurmResources {
            time: Some("1:00:00".into()),
            extra: vec!["--exclusive".into()],
            ..Default::default()
        };
        let both = o.overridden_by(&flags);
        assert_eq!(both.time.as_deref(), Some("1:00:00"));
        assert_eq!(both.partition.as_deref(), Some("gpu"));
        assert_eq!(both.extra, ["--qos=long", "--exclusive"]);
        assert!(o.check().is_ok());
        for (bad, key) in [
            (
                SlurmResources {
                    gpus: Some(0),
                    ..Default::default()
                },
                "slurm.gpus",
            ),
            (
                SlurmResources {
                    max_parallel: Some(0),
                    ..Default::default()
                },
                "slurm.max_parallel",
            ),
            (
                SlurmResources {
                    mem: Some(" ".into()),
                    ..Default::default()
                },
                "slurm.mem",
            ),
            (
                SlurmResources {
                    extra: vec!["--a\n--b".into()],
                    ..Default::default()
                },
                "slurm.extra",
            ),
        ] {
            let e = bad.check().unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn slurm_times_in_every_form() {
        use crate::records::slurm_seconds;
        for (text, seconds) in [
            ("10", 600),
            ("10:30", 630),
            ("2:00:00", 7200),
            ("1-0", 86400),
            ("1-2:30", 86400 + 2 * 3600 + 1800),
            ("0-0:1:5", 65),
        ] {
            assert_eq!(slurm_seconds(text), Some(Some(seconds)), "{text}");
        }
        assert_eq!(slurm_seconds("UNLIMITED"), Some(None));
        for bad in ["", "ten", "1:2:3:4", "-5", "1-", "1-2:3:4:5", "5m"] {
            assert_eq!(slurm_seconds(bad), None, "{bad}");
        }
    }
}
