//! A grid through a real single-node Slurm cluster (started by the test from the Debian
//! packages `slurmctld`, `slurmd`, `slurm-client` and `munge`, as root; stopped by process id
//! whatever happens): the aggregated results equal those of the same grid run locally; a task
//! sent SIGTERM (what Slurm sends before a time limit) checkpoints, requeues itself and
//! resumes to the same result, as does a task requeued by force (`scontrol requeue`); the
//! status command follows them. Skipped, with
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
fn a_grid_through_slurm_equals_the_local_grid_and_interrupted_tasks_resume() {
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

    // Two longer cells side by side, each interrupted once its first epoch is committed: one
    // by SIGTERM to its batch shell, as `--signal=B:TERM@120` sends before the time limit (it
    // saves a checkpoint where it is, exits 75 and requeues itself), the other requeued by
    // force (`scontrol requeue`: killed, it resumes from its last epoch's checkpoint). Slurm
    // starts requeued tasks after a delay of about two minutes.
    let long = write_grid(
        dir.path(),
        "long.toml",
        "methods = [\"CR\"]\nseeds = [2, 3]\n[settings]\nepochs = 6\ntrain_limit = 1024\n\
         eval_epochs = 1\nbatch_size = 32\n[slurm]\ncpus = 1\n",
    );
    let (requeued, straight) = (dir.path().join("requeued"), dir.path().join("straight"));
    submit(&cluster, &long, &requeued);
    let cell = |seed: u64| requeued.join(format!("two-view-mnist/CR/fold0-seed{seed}"));
    let start = Instant::now();
    while !(0..2).all(|k| cell(2 + k).join("checkpoints/state.json").exists())
        && start.elapsed() < Duration::from_secs(300)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let jobs = cluster.slurm("squeue", &["-h", "-r", "-t", "R", "-o", "%i"]);
    let tasks: Vec<String> = jobs
        .lines()
        .filter(|id| id.contains('_'))
        .map(|id| id.trim().to_string())
        .collect();
    assert_eq!(tasks.len(), 2, "two running array tasks expected: {jobs}");
    let (term, forced) = {
        let mut t = tasks.clone();
        t.sort();
        (t[0].clone(), t[1].clone())
    };
    for (program, args) in [
        ("scancel", vec!["--signal=TERM", "--batch", term.as_str()]),
        ("scontrol", vec!["requeue", forced.as_str()]),
    ] {
        let out = Command::new(program)
            .env("SLURM_CONF", cluster.conf())
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // While they wait to start again, the status command sees them queued.
    let start = Instant::now();
    let mut table = String::new();
    while start.elapsed() < Duration::from_secs(60) {
        let res = command()
            .env("SLURM_CONF", cluster.conf())
            .args(["experiment", "status", arg(&requeued)])
            .output()
            .unwrap();
        assert_ok(&res);
        table = String::from_utf8_lossy(&res.stdout).into_owned();
        if table.contains("2 pending") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(table.contains("2 pending"), "{table}");
    cluster.wait_idle(Duration::from_secs(900));
    let log = |task: &str| {
        std::fs::read_to_string(requeued.join(format!("slurm/logs/{task}.out"))).unwrap()
    };
    let term_log = log(&term);
    assert!(
        term_log.contains("training stopped on request") && term_log.contains("requeueing"),
        "{term_log}"
    );
    assert_ok(&experiment(&long, &straight, &[]));
    for seed in [2, 3] {
        let eval = |d: &Path| {
            let mut e =
                common::read_json(d.join(format!("two-view-mnist/CR/fold0-seed{seed}/eval.json")));
            e.as_object_mut().unwrap().remove("seconds");
            e
        };
        assert_eq!(eval(&requeued), eval(&straight), "seed {seed}");
    }
    let res = command()
        .env("SLURM_CONF", cluster.conf())
        .args(["experiment", "status", arg(&requeued)])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&res.stdout).contains("2 cells: 2 finished"));
}
