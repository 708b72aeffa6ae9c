//! `mmssl experiment --executor slurm`: the job-array and aggregation scripts, the cell list
//! (unfinished cells only), `--cell K` (what each array task runs), and the submission through
//! a stand-in `sbatch` that records its arguments (a real cluster is not needed here).

mod common;

use common::{arg, assert_fails, assert_ok, command, experiment, read_json};
use std::path::{Path, PathBuf};

/// A grid of four tiny cells (two methods x two seeds) in `dir`.
fn grid(dir: &Path) -> PathBuf {
    let grid = dir.join("grid.toml");
    std::fs::write(
        &grid,
        "methods = [\"XX\", \"lcca\"]\nseeds = [0, 1]\n[settings]\nepochs = 1\ntrain_limit = 64\n\
         eval_epochs = 1\nbatch_size = 32\n",
    )
    .unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let (grid, out) = (grid(dir.path()), dir.path().join("exp"));
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
    for line in [
        "#SBATCH --array=0-3%2",
        "#SBATCH --partition=gpu",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --time=02:00:00",
        "#SBATCH --qos=long",
        "#SBATCH --requeue",
        "experiment --grid",
        "--cell \"$CELL\"",
    ] {
        assert!(array.contains(line), "{line} missing:\n{array}");
    }
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

#[test]
fn submission_goes_through_sbatch_with_the_aggregation_after_the_array() {
    let dir = tempfile::tempdir().unwrap();
    let (grid, out) = (grid(dir.path()), dir.path().join("exp"));
    // A stand-in sbatch: records its arguments and answers job ids 1001, 1002, ...
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = dir.path().join("calls.txt");
    let sbatch = bin.join("sbatch");
    std::fs::write(
        &sbatch,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{calls}'\nn=$(wc -l < '{calls}')\necho $((1000 + n))\n",
            calls = calls.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sbatch, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |extra: &[&str]| {
        let mut args = vec!["experiment", "--grid", arg(&grid), "--out", arg(&out)];
        args.extend_from_slice(extra);
        command().env("PATH", &path).args(&args).output().unwrap()
    };
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
