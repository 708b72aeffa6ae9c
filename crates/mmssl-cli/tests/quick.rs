//! The commands that train nothing: `mmssl similarity` and `mmssl info` end to end, backend
//! selection (the CPU always works, a backend not compiled in is a clear error), and `mmssl
//! run`'s flags to a run configuration ([`RunArgs::to_config`]: flags over the configuration
//! file over the defaults, warnings for flags that do not apply).

mod common;
use common::scratch;

use burn::tensor::Tensor;
use clap::Parser;
use common::{arg, assert_fails, mmssl};
use mmssl_cli::backend::{BackendError, BackendKind, compiled, select_device};
use mmssl_cli::run::RunArgs;
use mmssl_protocol::RunConfig;
use ndarray::Array2;
use ndarray_npy::WriteNpyExt;
use std::path::{Path, PathBuf};

fn write<T: ndarray_npy::WritableElement>(dir: &Path, name: &str, a: &Array2<T>) -> PathBuf {
    let p = dir.join(name);
    a.write_npy(std::fs::File::create(&p).unwrap()).unwrap();
    p
}

/// Deterministic pseudo-random views sharing two latent factors.
fn views(n: usize, d_a: usize, d_b: usize) -> (Array2<f64>, Array2<f64>) {
    let noise = |i: usize, j: usize, s: usize| {
        (((i * 7919 + j * 104_729 + s) % 1009) as f64) / 1009.0 - 0.5
    };
    let z = Array2::from_shape_fn((n, 2), |(i, j)| noise(i, j, 1) * 4.0);
    let a = Array2::from_shape_fn((n, d_a), |(i, j)| {
        z[[i, j % 2]] * (j + 1) as f64 + noise(i, j, 2)
    });
    let b = Array2::from_shape_fn((n, d_b), |(i, j)| z[[i, (j + 1) % 2]] - noise(i, j, 3));
    (a, b)
}

#[test]
fn similarity_prints_every_index_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = views(300, 6, 4);
    let pa = write(dir.path(), "a.npy", &a);
    // B as float32: the CLI reads both element types.
    let pb = write(dir.path(), "b.npy", &b.mapv(|x| x as f32));
    let out = mmssl(&["similarity", "--a", arg(&pa), "--b", arg(&pb)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["cca", "svcca", "pwcca", "cka", "cka_debiased"] {
        let v = json[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {json}"));
        assert!((-0.1..=1.0).contains(&v), "{key} = {v}");
    }
    assert_eq!(json["n"], 300);
    assert_eq!(json["d_a"], 6);
    assert_eq!(json["d_b"], 4);
    // The same numbers as the library on the same (f32-rounded) data.
    let b32 = b.mapv(|x| x as f32 as f64);
    let lib = mmssl_similarity::Similarity::new()
        .report(a.view(), b32.view())
        .unwrap();
    assert!((json["cka"].as_f64().unwrap() - lib.cka.unwrap()).abs() < 1e-12);
    assert!((json["pwcca"].as_f64().unwrap() - lib.pwcca.unwrap()).abs() < 1e-12);
}

#[test]
fn underdetermined_cca_is_null_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = views(10, 20, 3);
    let pa = write(dir.path(), "a.npy", &a);
    let pb = write(dir.path(), "b.npy", &b);
    let out = mmssl(&["similarity", "--a", arg(&pa), "--b", arg(&pb), "--compact"]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["cca"].is_null() && json["pwcca"].is_null());
    assert!(json["cka"].is_f64() && json["svcca"].is_f64());
    let warnings = json["warnings"].to_string();
    assert!(warnings.contains("SVCCA"), "{warnings}");
}

#[test]
fn bad_files_exit_2_and_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = views(50, 3, 3);
    let pa = write(dir.path(), "a.npy", &a);
    let short = write(
        dir.path(),
        "short.npy",
        &b.slice(ndarray::s![..40, ..]).to_owned(),
    );
    let bogus = dir.path().join("bogus.npy");
    std::fs::write(&bogus, "not an array").unwrap();
    let missing = dir.path().join("nope.npy");
    for (other, expect) in [
        (&bogus, "bogus.npy"),
        (&missing, "nope.npy"),
        (&short, "same number of rows"),
    ] {
        let out = mmssl(&["similarity", "--a", arg(&pa), "--b", arg(other)]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: ") && err.contains(expect), "{err}");
        assert!(out.stdout.is_empty());
    }
    let out = mmssl(&[
        "similarity",
        "--a",
        arg(&pa),
        "--b",
        arg(&pa),
        "--svcca-threshold",
        "1.5",
    ]);
    assert_fails(&out, &["svcca_threshold"]);
}

#[test]
fn info_lists_backends_and_refuses_missing_ones_clearly() {
    let out = mmssl(&["info", "--backend", "cpu"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("backend cpu   compiled in") && text.contains("backend cpu works"),
        "{text}"
    );
    if !cfg!(feature = "cuda") {
        let out = mmssl(&["info", "--backend", "cuda"]);
        assert_fails(&out, &["--features cuda"]);
    }
}

#[test]
fn cpu_is_always_available_and_computes() {
    let device = select_device(BackendKind::Cpu).unwrap();
    let t = Tensor::<1>::from_floats([1.0, 2.0], &device);
    assert_eq!(
        (t * 3.0).into_data().try_to_vec::<f32>().unwrap(),
        vec![3.0, 6.0]
    );
}

#[test]
fn backends_not_compiled_in_are_clear_errors() {
    for kind in BackendKind::ALL {
        if compiled(kind) {
            continue;
        }
        let err = select_device(kind).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, BackendError::NotCompiled { .. }));
        assert!(
            msg.contains(&format!("--features {}", kind.name())),
            "{msg}"
        );
    }
}

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
    let (_dir, file) = scratch("c.toml");
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
