//! Where each cell of a grid stands: finished, running, pending, failed, stopped with a
//! checkpoint, or not started; from the run folders and, for grids submitted to Slurm, from
//! `squeue` and `sacct` where they answer.
//!
//! [`Grid::run`] and [`Grid::submit_slurm`] record the grid's cells in `EXP/cells.json`;
//! [`grid_status`] reads them back, so `mmssl experiment status EXP` needs only the folder.

use crate::error::{ProtocolError, Result};
use crate::folder::FolderLock;
use crate::grid::Grid;
use crate::records::Submission;
pub use crate::records::{CELLS_FILE, CellRecord};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where a cell stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CellState {
    /// `eval.json` is written.
    Finished,
    /// A process holds its folder's lock, or Slurm runs its task.
    Running,
    /// Its task waits in Slurm's queue.
    Pending,
    /// Its last attempt failed (`error.txt`, or Slurm's final state of its task).
    Failed,
    /// It has a checkpoint but nothing runs or waits to continue it (stopped, or its task
    /// was cancelled): run or submit the grid again to continue.
    Stopped,
    /// Nothing of it exists yet, and nothing waits to run it.
    NotStarted,
}

impl CellState {
    /// Every state, in the order summaries list them.
    pub const ALL: [CellState; 6] = [
        CellState::Finished,
        CellState::Running,
        CellState::Pending,
        CellState::Failed,
        CellState::Stopped,
        CellState::NotStarted,
    ];

    /// The state in words (`not-started`).
    pub fn name(self) -> &'static str {
        match self {
            CellState::Finished => "finished",
            CellState::Running => "running",
            CellState::Pending => "pending",
            CellState::Failed => "failed",
            CellState::Stopped => "stopped",
            CellState::NotStarted => "not-started",
        }
    }
}

/// Where one cell stands, and what to look at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellStatus {
    /// The cell.
    pub cell: CellRecord,
    /// Its state.
    pub state: CellState,
    /// Its Slurm task (`JOB_TASK`) in the latest submission that included it.
    pub job: Option<String>,
    /// What Slurm says of the task (`PENDING (Priority)`, `FAILED exit 2:0`), when it does.
    pub slurm: Option<String>,
    /// The first lines of the error of a failed cell (its `error.txt`, else the end of its
    /// task's log).
    pub error: Option<String>,
    /// The task's log file, when it exists.
    pub log: Option<PathBuf>,
}

/// Whether a source of information answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// Not asked: the grid was never submitted to Slurm.
    NotAsked,
    /// It answered.
    Answered,
    /// It could not answer (not installed, no accounting, ...): why.
    Unavailable(String),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::NotAsked => "not asked".into(),
            Source::Answered => "answered".into(),
            Source::Unavailable(why) => format!("unavailable ({why})"),
        }
    }
}

/// Where every cell of a grid stands ([`grid_status`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridStatus {
    /// The experiment folder.
    pub out: PathBuf,
    /// Every cell, in grid order.
    pub cells: Vec<CellStatus>,
    /// Whether `squeue` answered.
    pub squeue: Source,
    /// Whether `sacct` answered.
    pub sacct: Source,
}

impl GridStatus {
    /// Cells per state, in the order of [`CellState::ALL`], states without cells left out.
    pub fn counts(&self) -> Vec<(CellState, usize)> {
        CellState::ALL
            .iter()
            .map(|&s| (s, self.cells.iter().filter(|c| c.state == s).count()))
            .filter(|&(_, n)| n > 0)
            .collect()
    }

    /// A table for people: a summary line, one line per cell, and under a failed cell its
    /// error's first lines and its log file.
    pub fn table(&self) -> String {
        let counts: Vec<String> = self
            .counts()
            .iter()
            .map(|(s, n)| format!("{n} {}", s.name()))
            .collect();
        let mut text = format!(
            "{}: {} cells: {}\nsqueue: {}; sacct: {}\n\n",
            self.out.display(),
            self.cells.len(),
            counts.join(", "),
            self.squeue.describe(),
            self.sacct.describe()
        );
        let job_width = self
            .cells
            .iter()
            .filter_map(|c| c.job.as_ref().map(String::len))
            .max()
            .unwrap_or(1)
            .max(3);
        text += &format!(
            "{:>5}  {:<11}  {:<job_width$}  cell\n",
            "index", "state", "job"
        );
        for c in &self.cells {
            let slurm = c
                .slurm
                .as_ref()
                .map(|s| format!(" [{s}]"))
                .unwrap_or_default();
            text += &format!(
                "{:>5}  {:<11}  {:<job_width$}  {}{slurm}\n",
                c.cell.index,
                c.state.name(),
                c.job.as_deref().unwrap_or("-"),
                c.cell.label(),
            );
            if c.state == CellState::Failed {
                text += &format!("{:>7}folder: {}\n", "", c.cell.dir.display());
                if let Some(error) = &c.error {
                    for line in error.lines() {
                        text += &format!("{:>7}| {line}\n", "");
                    }
                }
                if let Some(log) = &c.log {
                    text += &format!("{:>7}log: {}\n", "", log.display());
                }
            }
        }
        text
    }
}

/// Where every cell of the grid run or submitted into `out` stands (see the module
/// documentation). `squeue` and `sacct` are asked only when the grid was submitted to Slurm
/// (`out/slurm/jobs.json`), with the cluster's settings of the environment (`SLURM_CONF`).
pub fn grid_status(out: &Path) -> Result<GridStatus> {
    let path = out.join(CELLS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ProtocolError::File {
                path,
                reason: format!(
                    "{} holds no grid: run or submit one into it first (`mmssl experiment \
                     --grid G --out {}`)",
                    out.display(),
                    out.display()
                ),
            });
        }
        Err(e) => return Err(ProtocolError::read(&path, e)),
    };
    let cells: Vec<CellRecord> =
        serde_json::from_str(&text).map_err(|e| ProtocolError::read(&path, e))?;
    Ok(status_of(out, cells, &SlurmTools::default()))
}

/// The programs asked about Slurm jobs.
#[derive(Debug, Clone)]
pub(crate) struct SlurmTools {
    pub squeue: PathBuf,
    pub sacct: PathBuf,
}

impl Default for SlurmTools {
    fn default() -> Self {
        SlurmTools {
            squeue: "squeue".into(),
            sacct: "sacct".into(),
        }
    }
}

/// The status of `cells` of the experiment `out`.
pub(crate) fn status_of(out: &Path, cells: Vec<CellRecord>, tools: &SlurmTools) -> GridStatus {
    let submissions: Vec<Submission> = std::fs::read_to_string(out.join("slurm/jobs.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    // The latest submission of each cell: its task id.
    let mut task_of: BTreeMap<usize, String> = BTreeMap::new();
    for s in &submissions {
        if let Some(array) = &s.array_job {
            for (i, k) in s.cells.iter().enumerate() {
                task_of.insert(*k, format!("{array}_{i}"));
            }
        }
    }
    let arrays: Vec<&str> = submissions
        .iter()
        .filter_map(|s| s.array_job.as_deref())
        .collect();
    let (queue, squeue) = if arrays.is_empty() {
        (BTreeMap::new(), Source::NotAsked)
    } else {
        match ask(&tools.squeue, &["-h", "-r", "-o", "%i|%T|%r"]) {
            Ok(text) => (parse_squeue(&text), Source::Answered),
            Err(why) => (BTreeMap::new(), Source::Unavailable(why)),
        }
    };
    let (accounting, sacct) = if arrays.is_empty() {
        (BTreeMap::new(), Source::NotAsked)
    } else {
        let jobs = arrays.join(",");
        match ask(
            &tools.sacct,
            &["-n", "-P", "-X", "-j", &jobs, "-o", "JobID,State,ExitCode"],
        ) {
            Ok(text) => (parse_sacct(&text), Source::Answered),
            Err(why) => (BTreeMap::new(), Source::Unavailable(why)),
        }
    };
    let logs = out.join("slurm").join("logs");
    let cells = cells
        .into_iter()
        .map(|cell| {
            let job = task_of.get(&cell.index).cloned();
            let log = job
                .as_ref()
                .map(|j| logs.join(format!("{j}.out")))
                .filter(|p| p.exists());
            let queued = job.as_ref().and_then(|j| queue.get(j));
            let accounted = job.as_ref().and_then(|j| accounting.get(j));
            let dir = &cell.dir;
            let error_file = std::fs::read_to_string(dir.join("error.txt")).ok();
            let (state, slurm) = if dir.join("eval.json").exists() {
                (CellState::Finished, None)
            } else if let Some((state, reason)) = queued {
                let text = format!("{state} ({reason})");
                match state.as_str() {
                    "RUNNING" | "COMPLETING" | "CONFIGURING" | "STAGE_OUT" | "SIGNALING" => {
                        (CellState::Running, Some(text))
                    }
                    _ => (CellState::Pending, Some(text)),
                }
            } else if FolderLock::is_held(dir) == Some(true) {
                (CellState::Running, None)
            } else if error_file.is_some() {
                (
                    CellState::Failed,
                    accounted.map(|(s, c)| format!("{s} exit {c}")),
                )
            } else if let Some((state, code)) = accounted
                && !matches!(
                    state.as_str(),
                    "COMPLETED" | "PENDING" | "RUNNING" | "REQUEUED"
                )
            {
                (CellState::Failed, Some(format!("{state} exit {code}")))
            } else if dir.join("checkpoints").join("state.json").exists() {
                (CellState::Stopped, None)
            } else {
                (CellState::NotStarted, None)
            };
            let error = match state {
                CellState::Failed => error_file
                    .map(|t| first_lines(&t, 5))
                    .or_else(|| log.as_ref().and_then(|l| last_lines(l, 5))),
                _ => None,
            };
            CellStatus {
                cell,
                state,
                job,
                slurm,
                error,
                log,
            }
        })
        .collect();
    GridStatus {
        out: out.to_path_buf(),
        cells,
        squeue,
        sacct,
    }
}

/// Runs `program ARGS`; its output, or why there is none.
fn ask(program: &Path, args: &[&str]) -> std::result::Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err.lines().next().unwrap_or("failed").trim().to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `JOB_TASK|STATE|REASON` lines (`squeue -h -r -o %i|%T|%r`) by task id.
fn parse_squeue(text: &str) -> BTreeMap<String, (String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.trim().splitn(3, '|');
            let id = parts.next()?.to_string();
            let state = parts.next()?.to_string();
            let reason = parts.next().unwrap_or("").to_string();
            Some((id, (state, reason)))
        })
        .collect()
}

/// `JOB_TASK|STATE|EXIT` lines (`sacct -n -P -X -o JobID,State,ExitCode`) by task id; the
/// state's first word (`CANCELLED by 0` -> `CANCELLED`).
fn parse_sacct(text: &str) -> BTreeMap<String, (String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.trim().split('|');
            let id = parts.next()?.to_string();
            let state = parts.next()?.split_whitespace().next()?.to_string();
            let code = parts.next().unwrap_or("").to_string();
            Some((id, (state, code)))
        })
        .collect()
}

fn first_lines(text: &str, n: usize) -> String {
    text.lines().take(n).collect::<Vec<_>>().join("\n")
}

fn last_lines(path: &Path, n: usize) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    (!lines.is_empty()).then(|| lines[lines.len().saturating_sub(n)..].join("\n"))
}

impl Grid {
    /// Where every cell of this grid stands in `out` (as [`grid_status`], for a grid whose
    /// cells were never recorded there).
    pub fn status(&self, out: &Path) -> GridStatus {
        let cells = crate::grid::cell_records(&self.cells(out));
        status_of(out, cells, &SlurmTools::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_and_sacct_lines_parse() {
        let q = parse_squeue("12_0|RUNNING|None\n12_1|PENDING|Resources\n\n");
        assert_eq!(q["12_1"], ("PENDING".into(), "Resources".into()));
        assert_eq!(q.len(), 2);
        let a = parse_sacct("12_0|COMPLETED|0:0\n12_1|CANCELLED by 0|0:15\n");
        assert_eq!(a["12_1"], ("CANCELLED".into(), "0:15".into()));
    }

    #[test]
    fn failed_cells_show_their_error_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let cell = |index: usize| CellRecord {
            index,
            dataset: "two-view-mnist".into(),
            method: "XX".into(),
            fold: 0,
            seed: index as u64,
            dir: out.join(format!("c{index}")),
        };
        // 0 finished, 1 failed, 2 stopped with a checkpoint, 3 never started.
        std::fs::create_dir_all(out.join("c0")).unwrap();
        std::fs::write(out.join("c0/eval.json"), "{}").unwrap();
        std::fs::create_dir_all(out.join("c1")).unwrap();
        std::fs::write(out.join("c1/error.txt"), "bad data\nline 2\n").unwrap();
        std::fs::create_dir_all(out.join("c2/checkpoints")).unwrap();
        std::fs::write(out.join("c2/checkpoints/state.json"), "{}").unwrap();
        let none = SlurmTools {
            squeue: "/nonexistent/squeue".into(),
            sacct: "/nonexistent/sacct".into(),
        };
        let s = status_of(out, (0..4).map(cell).collect(), &none);
        let states: Vec<CellState> = s.cells.iter().map(|c| c.state).collect();
        assert_eq!(
            states,
            [
                CellState::Finished,
                CellState::Failed,
                CellState::Stopped,
                CellState::NotStarted
            ]
        );
        assert_eq!(s.squeue, Source::NotAsked);
        assert_eq!(s.cells[1].error.as_deref(), Some("bad data\nline 2"));
        let table = s.table();
        assert!(table.contains("4 cells: 1 finished, 1 failed, 1 stopped, 1 not-started"));
        assert!(table.contains("| bad data"), "{table}");
        // A grid never recorded in a folder is an error naming it.
        let e = grid_status(&out.join("nothing")).unwrap_err().to_string();
        assert!(e.contains("holds no grid"), "{e}");
    }
}
