//! What an experiment folder records about its grid: the cells (`cells.json`), the Slurm
//! resources its tasks ask for and what each submission wrote. Below the grid, Slurm and the
//! status, which all read or write them.

use crate::error::{ProtocolError, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The file of an experiment folder that lists its grid's cells.
pub const CELLS_FILE: &str = "cells.json";

/// One cell as `cells.json` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellRecord {
    /// Its index in the grid ([`Grid::cells`]), as `--cell` takes it.
    pub index: usize,
    /// The dataset.
    pub dataset: String,
    /// The method, as the grid writes it.
    pub method: String,
    /// The fold.
    pub fold: usize,
    /// The seed.
    pub seed: u64,
    /// Its run folder.
    pub dir: PathBuf,
}

impl CellRecord {
    /// `dataset method fold F seed S`.
    pub fn label(&self) -> String {
        format!(
            "{} {} fold {} seed {}",
            self.dataset, self.method, self.fold, self.seed
        )
    }
}

/// What each task of a grid's job array asks Slurm for; `None` leaves a setting to the
/// cluster's defaults. A grid file's `[slurm]` section holds these keys ([`Grid::slurm`]);
/// [`SlurmOptions::resources`] (the command line's flags) overrides them key by key.
///
/// ```toml
/// [slurm]
/// partition = "gpu"
/// gpus = 1
/// cpus = 8
/// mem = "32G"
/// time = "12:00:00"
/// account = "lab"
/// qos = "long"
/// max_parallel = 20
/// signal_lead = 300
/// setup = ["module load cuda/12.4", "source $HOME/venvs/mmssl/bin/activate"]
/// wrapper = "apptainer exec --nv mmssl.sif"
/// extra = ["--qos=long", "--constraint=a100"]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmResources {
    /// `--partition`.
    #[serde(default)]
    pub partition: Option<String>,
    /// GPUs per task (`--gres=gpu:N`).
    #[serde(default)]
    pub gpus: Option<u32>,
    /// `--cpus-per-task`.
    #[serde(default)]
    pub cpus: Option<u32>,
    /// `--mem` (e.g. `16G`).
    #[serde(default)]
    pub mem: Option<String>,
    /// `--time` (e.g. `12:00:00`).
    #[serde(default)]
    pub time: Option<String>,
    /// `--account`.
    #[serde(default)]
    pub account: Option<String>,
    /// `--qos`.
    #[serde(default)]
    pub qos: Option<String>,
    /// Seconds before the time limit at which Slurm sends the task SIGTERM
    /// (`--signal=B:TERM@N`; default [`DEFAULT_SIGNAL_LEAD`]): the time a run has to finish
    /// its step and save a checkpoint. Must be below `time`.
    #[serde(default)]
    pub signal_lead: Option<u64>,
    /// At most this many array tasks at once (`--array=...%N`).
    #[serde(default)]
    pub max_parallel: Option<usize>,
    /// Shell lines that prepare a task's environment, run in both scripts before `mmssl`
    /// (`module load ...`, a virtual environment's or conda's activation).
    #[serde(default)]
    pub setup: Vec<String>,
    /// A command the scripts put before `mmssl` (an Apptainer/Singularity container:
    /// `apptainer exec --nv image.sif`), as written (shell words, not quoted).
    #[serde(default)]
    pub wrapper: Option<String>,
    /// Further `sbatch` arguments, each a whole `#SBATCH` line's argument (e.g. `--qos=long`).
    #[serde(default)]
    pub extra: Vec<String>,
}

impl SlurmResources {
    /// These resources with every key `other` sets taken from `other` (its `extra` lines
    /// appended after these).
    pub fn overridden_by(&self, other: &SlurmResources) -> SlurmResources {
        fn pick<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
            b.clone().or_else(|| a.clone())
        }
        SlurmResources {
            partition: pick(&self.partition, &other.partition),
            gpus: pick(&self.gpus, &other.gpus),
            cpus: pick(&self.cpus, &other.cpus),
            mem: pick(&self.mem, &other.mem),
            time: pick(&self.time, &other.time),
            account: pick(&self.account, &other.account),
            qos: pick(&self.qos, &other.qos),
            signal_lead: pick(&self.signal_lead, &other.signal_lead),
            setup: self.setup.iter().chain(&other.setup).cloned().collect(),
            wrapper: pick(&self.wrapper, &other.wrapper),
            max_parallel: pick(&self.max_parallel, &other.max_parallel),
            extra: self.extra.iter().chain(&other.extra).cloned().collect(),
        }
    }

    /// Refuses counts of 0 and empty or multi-line values, naming the key.
    pub fn check(&self) -> Result<()> {
        let zero = [
            ("gpus", self.gpus.map(|v| v as usize)),
            ("cpus", self.cpus.map(|v| v as usize)),
            ("max_parallel", self.max_parallel),
        ];
        for (key, value) in zero {
            if value == Some(0) {
                return Err(ProtocolError::setting(
                    &format!("slurm.{key}"),
                    0,
                    "must be at least 1 (leave it out for the cluster's default)",
                ));
            }
        }
        if let Some(lead) = self.signal_lead {
            let limit = match self.time.as_deref() {
                Some(t) => slurm_seconds(t).ok_or_else(|| {
                    ProtocolError::setting(
                        "slurm.time",
                        t,
                        "is not a Slurm time (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS)",
                    )
                })?,
                None => None,
            };
            if lead == 0 || limit.is_some_and(|l| lead >= l) {
                return Err(ProtocolError::setting(
                    "slurm.signal_lead",
                    lead,
                    match lead {
                        0 => "must be at least 1 second (the run needs time to save a checkpoint)"
                            .to_string(),
                        _ => format!(
                            "must be below the time limit ({} s): the warning would come \
                             before the task could work",
                            limit.unwrap_or_default()
                        ),
                    },
                ));
            }
        }
        let texts = [
            ("partition", self.partition.as_deref()),
            ("mem", self.mem.as_deref()),
            ("time", self.time.as_deref()),
            ("account", self.account.as_deref()),
            ("qos", self.qos.as_deref()),
            ("wrapper", self.wrapper.as_deref()),
        ];
        let extra = self.extra.iter().map(|e| ("extra", Some(e.as_str())));
        let setup = self.setup.iter().map(|e| ("setup", Some(e.as_str())));
        for (key, value) in texts.into_iter().chain(extra).chain(setup) {
            if let Some(v) = value
                && (v.trim().is_empty() || v.contains('\n'))
            {
                return Err(ProtocolError::setting(
                    &format!("slurm.{key}"),
                    format!("{v:?}"),
                    "must be one non-empty line",
                ));
            }
        }
        Ok(())
    }

    /// The `#SBATCH` lines of the resources for the array's tasks.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines_for(true)
    }

    /// The `#SBATCH` lines of the aggregation job: every line that applies to a job without
    /// GPUs (partition, memory, time, account, QOS and the extra lines; not the GPUs and
    /// CPUs a training task asks for), so that a cluster which requires an account, a QOS or
    /// a time takes it too.
    pub(crate) fn aggregate_lines(&self) -> Vec<String> {
        self.lines_for(false)
    }

    fn lines_for(&self, task: bool) -> Vec<String> {
        let mut lines = Vec::new();
        let mut add = |flag: &str, value: Option<String>| {
            if let Some(v) = value {
                lines.push(format!("#SBATCH --{flag}={v}"));
            }
        };
        add("partition", self.partition.clone());
        if task {
            add("gres", self.gpus.map(|g| format!("gpu:{g}")));
            add("cpus-per-task", self.cpus.map(|c| c.to_string()));
        }
        add("mem", self.mem.clone());
        add("time", self.time.clone());
        add("account", self.account.clone());
        add("qos", self.qos.clone());
        for extra in &self.extra {
            lines.push(format!("#SBATCH {extra}"));
        }
        lines
    }
}

/// What [`Grid::submit_slurm`] wrote and submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    /// The submission's stamp (UTC time), part of its file names.
    pub stamp: String,
    /// The cells submitted (indices into [`Grid::cells`]).
    pub cells: Vec<usize>,
    /// Cells skipped, and why: finished (`eval.json`), running (their folder is locked, or
    /// Slurm runs their task) or pending (their task from an earlier submission waits in
    /// Slurm's queue).
    pub skipped: Vec<(usize, String)>,
    /// The job-array script.
    pub array_script: PathBuf,
    /// The aggregation script.
    pub aggregate_script: PathBuf,
    /// The array's job id (`None` for a dry run or when no cell is left).
    pub array_job: Option<String>,
    /// The aggregation job's id (`None` for a dry run).
    pub aggregate_job: Option<String>,
}

/// Seconds before the time limit at which Slurm warns a task with SIGTERM, unless
/// [`SlurmResources::signal_lead`] says otherwise.
pub const DEFAULT_SIGNAL_LEAD: u64 = 120;

/// A Slurm `--time` value in seconds: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`,
/// `D-HH:MM:SS`; `Some(None)` for no limit (`UNLIMITED`, `infinite`), `None` when it is none
/// of these.
pub(crate) fn slurm_seconds(time: &str) -> Option<Option<u64>> {
    let t = time.trim();
    if t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("infinite") {
        return Some(None);
    }
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.chars().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (days, rest) = match t.split_once('-') {
        Some((d, rest)) => (Some(number(d)?), rest),
        None => (None, t),
    };
    let parts: Vec<u64> = rest.split(':').map(number).collect::<Option<_>>()?;
    let seconds = match (days, parts.as_slice()) {
        (None, [m]) => m * 60,
        (None, [m, s]) => m * 60 + s,
        (None, [h, m, s]) => h * 3600 + m * 60 + s,
        (Some(d), [h]) => d * 86400 + h * 3600,
        (Some(d), [h, m]) => d * 86400 + h * 3600 + m * 60,
        (Some(d), [h, m, s]) => d * 86400 + h * 3600 + m * 60 + s,
        _ => return None,
    };
    Some(Some(seconds))
}
