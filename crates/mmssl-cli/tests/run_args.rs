//! `mmssl run` flags to a run configuration ([`RunArgs::to_config`]): flags over the
//! configuration file over the defaults, warnings for flags that do not apply.

use clap::Parser;
use mmssl_cli::run::RunArgs;
use mmssl_protocol::RunConfig;
use std::path::PathBuf;

/// [`mmssl_protocol::utc_stamp`] of `secs` seconds after 1970-01-01 UTC.
fn civil_time(secs: u64) -> String {
    mmssl_protocol::utc_stamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

fn parse(flags: &[&str]) -> RunArgs {
    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        run: RunArgs,
    }
    let mut argv = vec!["mmssl-run"];
    argv.extend(flags);
    Flags::try_parse_from(argv).unwrap().run
}

#[test]
fn civil_times_of_known_instants() {
    assert_eq!(civil_time(0), "19700101-000000");
    // 2000-02-29 12:34:56 UTC, a leap day.
    assert_eq!(civil_time(951_827_696), "20000229-123456");
    // 2026-12-04 18:07:51 UTC.
    assert_eq!(civil_time(1_796_407_671), "20261204-180751");
}

#[test]
fn flags_override_the_config_file_and_the_defaults() {
    let (c, w) = parse(&[]).to_config().unwrap();
    assert_eq!(w.len(), 0);
    // The default folder is a new one per run.
    assert!(c.output.dir.starts_with("runs"));
    assert!(
        c.output.dir.to_string_lossy().contains("CR-XX-CC-"),
        "{:?}",
        c.output.dir
    );
    let mut d = c.clone();
    d.output.dir = RunConfig::default().output.dir;
    assert_eq!(d, RunConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "epochs = 3\ntrain_limit = 100\n[training]\nbatch_size = 32\n",
    )
    .unwrap();
    let (c, _) = parse(&[
        "--config",
        file.to_str().unwrap(),
        "--epochs",
        "5",
        "--method",
        "dccae;cca_norm=frobenius",
        "--cca-dim",
        "12",
        "--lr",
        "0.001",
        "--bn-train-mode",
    ])
    .to_config()
    .unwrap();
    assert_eq!((c.training.epochs, c.training.batch_size), (5, 32));
    assert_eq!((c.data.train_limit, c.training.lr), (Some(100), 0.001));
    assert_eq!(c.method.to_string(), "dccae;cca_norm=frobenius;cca_dim=12");
    assert!(c.evaluation.bn_train_mode);
    let (c, w) = parse(&["--objective", "CR", "--mmvae-k", "3"])
        .to_config()
        .unwrap();
    assert_eq!(c.method.to_string(), "CR");
    assert!(
        w[0].contains("--mmvae-k") && w[0].contains("mmvae"),
        "{w:?}"
    );
    let e = parse(&["--objective", "CR", "--method", "dccae"])
        .to_config()
        .unwrap_err();
    assert!(e.to_string().contains("both"), "{e}");
    let demo = RunArgs::quick_demo().to_config().unwrap().0;
    assert_eq!(
        (demo.training.epochs, demo.evaluation.epochs),
        (2, Some(10))
    );
    assert_eq!(demo.output.dir, PathBuf::from("runs/demo"));
}
