//! `mmssl experiment --executor slurm`: the job-array and aggregation scripts (resources from
//! the grid's `[slurm]` and flags), the cell list (unfinished cells only), `--cell K` (what
//! each array task runs), the submission through a stand-in `sbatch` that records its
//! arguments, `mmssl experiment status` from stand-in `squeue` and `sacct`, and an array task
//! stopped by SIGTERM requeueing itself (a stand-in `scontrol`) and resuming to the
//! uninterrupted result (a real cluster is not needed here).

mod common;

use common::{
    arg, assert_contains_all, assert_fails, assert_ok, command, experiment, read_json, scratch,
    tiny_grid,
};
use std::path::{Path, PathBuf};

/// A grid of four tiny cells (two methods x two seeds) in `dir`.
fn grid(dir: &Path) -> PathBuf {
    tiny_grid(dir, "\"XX\", \"lcca\"", "0, 1")
}

/// [`grid`] with the `[slurm]` section `slurm`.
fn grid_with_slurm(dir: &Path, slurm: &str) -> PathBuf {
    let grid = grid(dir);
    let text = std::fs::read_to_string(&grid).unwrap();
    std::fs::write(&grid, format!("{text}[slurm]\n{slurm}")).unwrap();
    grid
}

/// The one `.sbatch` script of `dir` whose name starts with `prefix`.
fn script(dir: &Path, prefix: &str) -> String {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(prefix) && name.ends_with(".sbatch")
        })
        .collect();
    found.sort();
    std::fs::read_to_string(found.last().expect("a script")).unwrap()
}

#[test]
fn a_dry_run_writes_the_array_the_aggregation_and_every_cells_configuration() {
    let (dir, out) = scratch("exp");
    // Resources from the grid file's [slurm] section; the flags override it key by key.
    let slurm = "partition = \"cpu\"\nmem = \"8G\"\nextra = [\"--nice=5\"]\n";
    let grid = grid_with_slurm(dir.path(), slurm);
    let flags = "--executor slurm --dry-run --partition gpu --gpus 1 --cpus 4 --time 02:00:00 \
                 --max-parallel 2 --sbatch-arg=--qos=long";
    let res = experiment(&grid, &out, &flags.split_whitespace().collect::<Vec<_>>());
    assert_ok(&res);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        stdout.contains("4 cells to run ([0, 1, 2, 3]), 0 skipped"),
        "{stdout}"
    );
    assert!(stdout.contains("dry run: nothing submitted"), "{stdout}");
    let slurm = out.join("slurm");
    let array = script(&slurm, "array-");
    assert_contains_all(
        &array,
        &[
            "#SBATCH --array=0-3%2",
            "#SBATCH --partition=gpu",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --cpus-per-task=4",
            "#SBATCH --time=02:00:00",
            "#SBATCH --qos=long",
            "#SBATCH --mem=8G",
            "#SBATCH --nice=5",
            "#SBATCH --requeue",
            "#SBATCH --signal=B:TERM@120",
            "scontrol requeue \"$TASK\"",
            "experiment --grid",
            "--cell \"$CELL\"",
        ],
    );
    assert!(!array.contains("--partition=cpu"), "{array}");
    assert!(stdout.contains(&array), "the dry run prints the script");
    let aggregate = script(&slurm, "aggregate-");
    assert!(aggregate.contains("--aggregate-only"), "{aggregate}");
    // Every cell's complete configuration, its run folder as `mmssl experiment` would use.
    for k in 0..4 {
        let text = std::fs::read_to_string(slurm.join(format!("cells/{k}.toml"))).unwrap();
        assert!(
            text.contains("[output]") && text.contains("fold0-seed"),
            "{text}"
        );
    }
    let cell3 = std::fs::read_to_string(slurm.join("cells/3.toml")).unwrap();
    assert!(
        cell3.contains("lcca") && cell3.contains("fold0-seed1"),
        "{cell3}"
    );
    assert!(
        !slurm.join("jobs.json").exists(),
        "a dry run records no jobs"
    );
}

#[test]
fn one_cell_runs_alone_and_finished_cells_are_not_submitted_again() {
    let dir = tempfile::tempdir().unwrap();
    let (grid, out) = (grid(dir.path()), dir.path().join("exp"));
    assert_ok(&experiment(&grid, &out, &["--cell", "1"]));
    // Cell 1 is XX with seed 1; no other cell ran and nothing was aggregated.
    assert!(out.join("two-view-mnist/XX/fold0-seed1/eval.json").exists());
    assert!(!out.join("two-view-mnist/XX/fold0-seed0").exists());
    assert!(!out.join("results.csv").exists());
    // Running it again reuses it.
    assert_ok(&experiment(&grid, &out, &["--cell", "1"]));
    let res = experiment(&grid, &out, &["--executor", "slurm", "--dry-run"]);
    assert_ok(&res);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        stdout.contains("3 cells to run ([0, 2, 3]), 1 skipped (1 finished)"),
        "{stdout}"
    );
    assert!(script(&out.join("slurm"), "array-").contains("--array=0-2\n"));
    assert_fails(
        &experiment(&grid, &out, &["--cell", "9"]),
        &["cell 9 does not exist", "4 cells"],
    );
}

/// Writes the executable stand-in `bin/name` (a shell script) and returns `bin` prepended to
/// the `PATH`.
fn stand_in(bin: &Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(bin).unwrap();
    let file = bin.join(name);
    std::fs::write(&file, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A stand-in `sbatch` in `dir/bin` that appends its arguments to `dir/calls.txt` (`$CALLS`)
/// and then runs `answer` (which prints the job id or fails). Returns the stand-ins' folder,
/// the calls file and the `PATH` with the stand-ins first.
fn recording_sbatch(dir: &Path, answer: &str) -> (PathBuf, PathBuf, String) {
    let bin = dir.join("bin");
    let calls = dir.join("calls.txt");
    let body = format!(
        "CALLS='{}'\necho \"$@\" >> \"$CALLS\"\n{answer}",
        calls.display()
    );
    let path = stand_in(&bin, "sbatch", &body);
    (bin, calls, path)
}

/// `mmssl experiment --grid GRID --out OUT EXTRA...` with `path` as the `PATH` (the
/// stand-ins first).
fn experiment_on(path: &str, grid: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    command()
        .env("PATH", path)
        .args(["experiment", "--grid", arg(grid), "--out", arg(out)])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn submission_goes_through_sbatch_with_the_aggregation_after_the_array() {
    let dir = tempfile::tempdir().unwrap();
    let (grid, out) = (grid(dir.path()), dir.path().join("exp"));
    // A stand-in sbatch: records its arguments and answers job ids 1001, 1002, ...
    let (bin, calls, path) =
        recording_sbatch(dir.path(), "n=$(wc -l < \"$CALLS\")\necho $((1000 + n))\n");
    let run = |extra: &[&str]| experiment_on(&path, &grid, &out, extra);
    let res = run(&["--executor", "slurm", "--quiet"]);
    assert_ok(&res);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(stdout.contains("job array 1001") && stdout.contains("aggregation job 1002"));
    let calls = std::fs::read_to_string(&calls).unwrap();
    let lines: Vec<&str> = calls.lines().collect();
    assert_eq!(lines.len(), 2, "{calls}");
    assert!(lines[0].starts_with("--parsable ") && lines[0].contains("array-"));
    assert!(lines[1].contains("--dependency=afterany:1001") && lines[1].contains("aggregate-"));
    let jobs = read_json(out.join("slurm/jobs.json"));
    assert_eq!(jobs[0]["array_job"], "1001");
    assert_eq!(jobs[0]["aggregate_job"], "1002");
    assert_eq!(jobs[0]["cells"].as_array().unwrap().len(), 4);

    // Where the cells stand, from stand-ins of squeue and sacct: task 0 runs, task 1 waits,
    // task 2 failed (its log says why), task 3 was cancelled before it started.
    stand_in(
        &bin,
        "squeue",
        "echo '1001_0|RUNNING|None'\necho '1001_1|PENDING|Resources'\necho '977|RUNNING|None'\n",
    );
    stand_in(
        &bin,
        "sacct",
        "echo '1001_0|RUNNING|0:0'\necho '1001_2|FAILED|1:0'\necho '1001_3|CANCELLED by 0|0:15'\n",
    );
    let log = out.join("slurm/logs/1001_2.out");
    std::fs::write(&log, "epoch 1\nerror: the data folder is not readable\n").unwrap();
    let status = |extra: &[&str]| {
        let res = command()
            .env("PATH", &path)
            .args(["experiment", "status", arg(&out)])
            .args(extra)
            .output()
            .unwrap();
        assert_ok(&res);
        String::from_utf8_lossy(&res.stdout).into_owned()
    };
    let table = status(&[]);
    assert_contains_all(
        &table,
        &[
            "4 cells: 1 running, 1 pending, 2 failed",
            "squeue: answered; sacct: answered",
            "running      1001_0  two-view-mnist XX fold 0 seed 0 [RUNNING (None)]",
            "pending      1001_1  two-view-mnist XX fold 0 seed 1 [PENDING (Resources)]",
            "failed       1001_2  two-view-mnist lcca fold 0 seed 0 [FAILED exit 1:0]",
            "| error: the data folder is not readable",
            "log: ",
            "1001_2.out",
            "[CANCELLED exit 0:15]",
        ],
    );
    let json: serde_json::Value = serde_json::from_str(&status(&["--json"])).unwrap();
    assert_eq!(json["cells"][1]["state"], "pending");
    assert_eq!(json["cells"][2]["log"], arg(&log));
    // Submitting again leaves the running and the waiting task alone.
    let res = run(&["--executor", "slurm", "--quiet"]);
    assert_ok(&res);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        stdout.contains(
            "2 cells to run ([2, 3]), 2 skipped (0 running as 1001_0, 1 pending as 1001_1)"
        ),
        "{stdout}"
    );
    // Without Slurm's programs the folders still answer, and the status says what is missing.
    let empty = dir.path().join("nothing");
    std::fs::create_dir_all(&empty).unwrap();
    let res = command()
        .env("PATH", &empty)
        .args(["experiment", "status", arg(&out)])
        .output()
        .unwrap();
    assert_ok(&res);
    let table = String::from_utf8_lossy(&res.stdout);
    assert!(table.contains("squeue: unavailable"), "{table}");
    assert!(table.contains("4 cells: 4 not-started"), "{table}");
}

/// A long cell: 3 epochs of 20 steps.
fn long_grid(dir: &Path) -> PathBuf {
    let grid = dir.join("long.toml");
    std::fs::write(
        &grid,
        "methods = [\"CR\"]\nseeds = [3]\n[settings]\nepochs = 3\ntrain_limit = 640\n\
         eval_epochs = 1\nbatch_size = 32\n",
    )
    .unwrap();
    grid
}

#[test]
fn an_array_task_stopped_by_sigterm_requeues_itself_and_resumes_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let grid = long_grid(dir.path());
    let (out, straight) = (dir.path().join("exp"), dir.path().join("straight"));
    assert_ok(&experiment(
        &grid,
        &out,
        &["--executor", "slurm", "--dry-run"],
    ));
    let array = std::fs::read_dir(out.join("slurm"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "sbatch") && arg(p).contains("array-"))
        .unwrap();
    // The task as Slurm would start it, with a stand-in scontrol that records its arguments.
    let calls = dir.path().join("scontrol.txt");
    let path = stand_in(
        &dir.path().join("bin"),
        "scontrol",
        &format!("echo \"$@\" >> '{}'\n", calls.display()),
    );
    let task = || {
        std::process::Command::new("bash")
            .arg(&array)
            .env("PATH", &path)
            .env("SLURM_ARRAY_JOB_ID", "7")
            .env("SLURM_ARRAY_TASK_ID", "0")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let state = out.join("two-view-mnist/CR/fold0-seed3/checkpoints/state.json");
    let child = task();
    let start = std::time::Instant::now();
    while !state.exists() && start.elapsed() < std::time::Duration::from_secs(300) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    // What `--signal=B:TERM@120` does: SIGTERM to the batch shell only.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let res = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert_eq!(
        res.status.code(),
        Some(75),
        "{stdout}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(stdout.contains("requeueing 7_0"), "{stdout}");
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        stderr.contains("this Slurm task requeues itself"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "requeue 7_0\n");
    assert!(!out.join("two-view-mnist/CR/fold0-seed3/eval.json").exists());
    // The requeued task: the same script again, which resumes the cell and finishes it.
    let res = task().wait_with_output().unwrap();
    assert_ok(&res);
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "requeue 7_0\n");
    assert_ok(&experiment(&grid, &straight, &[]));
    let eval = |d: &Path| {
        let mut e = read_json(d.join("two-view-mnist/CR/fold0-seed3/eval.json"));
        e.as_object_mut().unwrap().remove("seconds");
        e
    };
    assert_eq!(eval(&out), eval(&straight));
}

#[test]
fn slurm_settings_without_slurm_and_a_missing_sbatch_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (grid, out) = (grid(dir.path()), dir.path().join("exp"));
    assert_fails(
        &experiment(&grid, &out, &["--gpus", "1"]),
        &["gpus", "--executor slurm"],
    );
    assert_fails(&experiment(&grid, &out, &["--dry-run"]), &["dry-run"]);
    // No sbatch on the PATH.
    let empty = dir.path().join("nothing");
    std::fs::create_dir_all(&empty).unwrap();
    let res = command()
        .env("PATH", &empty)
        .args(["experiment", "--grid", arg(&grid), "--out", arg(&out)])
        .args(["--executor", "slurm", "--quiet"])
        .output()
        .unwrap();
    assert_fails(&res, &["sbatch", "is Slurm installed"]);
}

/// Issue 35 items 18, 19: the aggregation job carries every resource line that applies to it
/// (it was given the partition only, and clusters that require an account, a QOS or a time
/// refused it); the warning before the time limit is `signal_lead` seconds, and one not below
/// the limit is refused.
#[test]
fn both_scripts_get_their_resources_and_the_signal_lead_is_the_grids() {
    let dir = tempfile::tempdir().unwrap();
    let (grid, out) = (grid(dir.path()), dir.path().join("exp"));
    let text = std::fs::read_to_string(&grid).unwrap();
    let with = |slurm: &str| std::fs::write(&grid, format!("{text}[slurm]\n{slurm}")).unwrap();
    with(
        "partition = \"cpu\"\naccount = \"lab\"\nqos = \"short\"\ntime = \"0:10:00\"\n\
         gpus = 1\nsignal_lead = 300\nextra = [\"--constraint=avx2\"]\n",
    );
    assert_ok(&experiment(
        &grid,
        &out,
        &["--executor", "slurm", "--dry-run"],
    ));
    let aggregate = script(&out.join("slurm"), "aggregate-");
    assert_contains_all(
        &aggregate,
        &[
            "#SBATCH --partition=cpu",
            "#SBATCH --account=lab",
            "#SBATCH --qos=short",
            "#SBATCH --time=0:10:00",
            "#SBATCH --constraint=avx2",
        ],
    );
    assert!(!aggregate.contains("--gres"), "no GPU for the aggregation");
    let array = script(&out.join("slurm"), "array-");
    assert_contains_all(
        &array,
        &[
            "#SBATCH --signal=B:TERM@300",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --qos=short",
        ],
    );
    // A lead of the whole limit (10 minutes) or more is refused, as is a limit Slurm would not
    // read.
    with("time = \"10\"\nsignal_lead = 600\n");
    assert_fails(
        &experiment(&grid, &out, &["--executor", "slurm", "--dry-run"]),
        &["slurm.signal_lead", "must be below the time limit (600 s)"],
    );
    with("time = \"ten minutes\"\nsignal_lead = 60\n");
    assert_fails(
        &experiment(&grid, &out, &["--executor", "slurm", "--dry-run"]),
        &["slurm.time", "is not a Slurm time"],
    );
    // The day forms count too: 1-00:00 is a day.
    with("time = \"1-00:00\"\nsignal_lead = 3600\n");
    assert_ok(&experiment(
        &grid,
        &out,
        &["--executor", "slurm", "--dry-run"],
    ));
}

/// Issue 35 item 17: a refused aggregation job no longer leaves the array queued and
/// untracked. The array is cancelled (nothing of the submission stays) or, where `scancel`
/// fails, recorded in `jobs.json` so that the next submission does not queue its cells twice.
#[test]
fn a_submission_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (grid, out) = (grid(dir.path()), dir.path().join("exp"));
    // sbatch queues the array (job 2001) and refuses the aggregation, as a site's submit
    // filter does for a job without an account.
    let (bin, calls, path) = recording_sbatch(
        dir.path(),
        "case \"$*\" in *aggregate-*) echo 'sbatch: error: Batch job submission failed: \
         Invalid account' >&2; exit 1;; esac\necho 2001\n",
    );
    stand_in(
        &bin,
        "scancel",
        &format!("echo \"scancel $@\" >> '{}'\n", calls.display()),
    );
    let submit = || experiment_on(&path, &grid, &out, &["--executor", "slurm", "--quiet"]);
    let res = submit();
    assert_fails(
        &res,
        &[
            "Invalid account",
            "job array 2001",
            "was cancelled",
            "nothing of this submission",
        ],
    );
    let log = std::fs::read_to_string(&calls).unwrap();
    assert!(log.contains("scancel 2001"), "{log}");
    let jobs = read_json(out.join("slurm/jobs.json"));
    assert_eq!(jobs.as_array().map(Vec::len), Some(0), "{jobs}");
    // scancel fails too: the array stays recorded, and the error says how to finish.
    stand_in(
        &bin,
        "scancel",
        "echo 'scancel: error: access denied' >&2\nexit 1\n",
    );
    let res = submit();
    assert_fails(&res, &["stays queued", "sbatch --dependency=afterany:2001"]);
    let jobs = read_json(out.join("slurm/jobs.json"));
    assert_eq!(jobs[0]["array_job"], "2001", "{jobs}");
    assert_eq!(jobs[0]["cells"].as_array().map(Vec::len), Some(4));
    // Its tasks wait in the queue: a new submission queues none of them again.
    stand_in(
        &bin,
        "squeue",
        "for i in 0 1 2 3; do echo \"2001_$i|PENDING|Priority\"; done\n",
    );
    stand_in(&bin, "sacct", "true\n");
    let res = experiment_on(&path, &grid, &out, &["--executor", "slurm", "--dry-run"]);
    assert_ok(&res);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(stdout.contains("0 cells to run"), "{stdout}");
}

/// Issue 35 item 20: `[slurm] setup` lines prepare each task's environment (module loads, an
/// environment's activation) and `wrapper` runs mmssl inside a container, in both scripts, and
/// the dry run shows them.
#[test]
fn setup_lines_and_a_wrapper_prepare_every_task() {
    let (dir, out) = scratch("exp");
    let grid = grid_with_slurm(
        dir.path(),
        "setup = [\"module load cuda/12.4\", \"source $HOME/env/bin/activate\"]\n\
         wrapper = \"apptainer exec --nv mmssl.sif\"\n",
    );
    let res = experiment(&grid, &out, &["--executor", "slurm", "--dry-run"]);
    assert_ok(&res);
    let stdout = String::from_utf8_lossy(&res.stdout);
    for name in ["array-", "aggregate-"] {
        let s = script(&out.join("slurm"), name);
        let setup = s.find("module load cuda/12.4\nsource $HOME/env/bin/activate\n");
        let run = s.find("apptainer exec --nv mmssl.sif '");
        assert!(
            setup.is_some() && run.is_some() && setup < run,
            "{name}: the setup runs first, then mmssl in the container:\n{s}"
        );
        assert!(
            stdout.contains("module load cuda/12.4"),
            "the dry run shows it"
        );
    }
    let grid = grid_with_slurm(dir.path(), "setup = [\"module load a\\nmodule load b\"]\n");
    assert_fails(
        &experiment(&grid, &out, &["--executor", "slurm", "--dry-run"]),
        &["slurm.setup", "one non-empty line"],
    );
}
