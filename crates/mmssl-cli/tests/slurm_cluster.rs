//! A grid through a real single-node Slurm cluster (started by the test from the Debian
//! packages `slurmctld`, `slurmd`, `slurm-client` and `munge`, as root; stopped by process id
//! whatever happens): the aggregated results equal those of the same grid run locally, and a
//! task requeued while it runs (`scontrol requeue`) resumes to the same result. Skipped, with
//! a message, where the Slurm binaries are absent or the test is not root.

mod common;

use common::{arg, assert_ok, command, experiment};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The daemons of a test cluster; dropping it stops them.
struct Cluster {
    dir: PathBuf,
    pids: Vec<u32>,
}

impl Cluster {
    /// Starts a cluster under `dir`, or `None` (with the reason printed) where it cannot run.
    fn start(dir: &Path) -> Option<Cluster> {
        let missing: Vec<&str> = ["slurmctld", "slurmd", "sbatch", "munged", "scontrol"]
            .into_iter()
            .filter(|b| {
                !Command::new("which")
                    .arg(b)
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .collect();
        if !missing.is_empty() {
            eprintln!(
                "skipping the Slurm cluster test: {} not installed",
                missing.join(", ")
            );
            return None;
        }
        let uid = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            eprintln!("skipping the Slurm cluster test: the daemons need root");
            return None;
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slurm/cluster.sh");
        let out = Command::new("bash").arg(&script).arg(dir).output().unwrap();
        // The pids of whatever started, so that a failed start is cleaned up too.
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            pids: Vec::new(),
        };
        for daemon in ["slurmd", "slurmctld", "munged"] {
            if let Ok(text) = std::fs::read_to_string(dir.join(format!("run/{daemon}.pid"))) {
                cluster.pids.extend(text.trim().parse::<u32>().ok());
            }
        }
        assert!(
            out.status.success(),
            "the test cluster did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(cluster)
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("slurm.conf")
    }

    /// `program ARGS` with this cluster's configuration.
    fn slurm(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new(program)
            .env("SLURM_CONF", self.conf())
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until no job is queued or running.
    fn wait_idle(&self, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.slurm("squeue", &["-h"]).trim().is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "jobs still queued after {limit:?}: {}",
            self.slurm("squeue", &[])
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

fn write_grid(dir: &Path, name: &str, text: &str) -> PathBuf {
    let grid = dir.join(name);
    std::fs::write(&grid, text).unwrap();
    grid
}

/// `mmssl experiment --grid GRID --out OUT --executor slurm` against `cluster`.
fn submit(cluster: &Cluster, grid: &Path, out: &Path) {
    let res = command()
        .env("SLURM_CONF", cluster.conf())
        .args(["experiment", "--grid", arg(grid), "--out", arg(out)])
        .args(["--executor", "slurm", "--quiet"])
        .output()
        .unwrap();
    assert_ok(&res);
}

#[test]
fn a_grid_through_slurm_equals_the_local_grid_and_a_requeued_task_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let Some(cluster) = Cluster::start(&dir.path().join("cluster")) else {
        return;
    };
    // Four cells, run as a job array, aggregated by the job after it.
    let grid = write_grid(
        dir.path(),
        "grid.toml",
        "methods = [\"XX\", \"lcca\"]\nseeds = [0, 1]\n[settings]\nepochs = 1\n\
         train_limit = 64\neval_epochs = 1\nbatch_size = 32\n",
    );
    let (on_slurm, local) = (dir.path().join("slurm"), dir.path().join("local"));
    submit(&cluster, &grid, &on_slurm);
    cluster.wait_idle(Duration::from_secs(600));
    assert_ok(&experiment(&grid, &local, &[]));
    let results = |d: &Path| std::fs::read_to_string(d.join("results.csv")).unwrap();
    assert_eq!(results(&on_slurm), results(&local));
    assert_eq!(results(&local).lines().count(), 1 + 8);

    // One longer cell, requeued while it runs, once its first epoch is committed.
    let long = write_grid(
        dir.path(),
        "long.toml",
        "methods = [\"CR\"]\nseeds = [2]\n[settings]\nepochs = 6\ntrain_limit = 1024\n\
         eval_epochs = 1\nbatch_size = 32\n",
    );
    let (requeued, straight) = (dir.path().join("requeued"), dir.path().join("straight"));
    submit(&cluster, &long, &requeued);
    let state = requeued.join("two-view-mnist/CR/fold0-seed2/checkpoints/state.json");
    let start = Instant::now();
    while !state.exists() && start.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(state.exists(), "the first epoch was never committed");
    let jobs = cluster.slurm("squeue", &["-h", "-t", "R", "-o", "%i"]);
    let task = jobs
        .lines()
        .find(|id| id.contains('_'))
        .unwrap_or_else(|| panic!("no running array task: {jobs}"))
        .trim()
        .to_string();
    let out = Command::new("scontrol")
        .env("SLURM_CONF", cluster.conf())
        .args(["requeue", &task])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cluster.wait_idle(Duration::from_secs(900));
    assert_ok(&experiment(&long, &straight, &[]));
    let eval = |d: &Path| {
        let mut e = common::read_json(d.join("two-view-mnist/CR/fold0-seed2/eval.json"));
        e.as_object_mut().unwrap().remove("seconds");
        e
    };
    assert_eq!(eval(&requeued), eval(&straight));
    // The requeued task's log shows both attempts in one file (--open-mode=append).
    let logs: Vec<PathBuf> = std::fs::read_dir(requeued.join("slurm/logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!logs.is_empty());
}
