//! `mmssl import`, `mmssl export` and `mmssl run --init-from` end to end: the authors' 2D
//! checkpoint becomes a run folder that linear-eval, explain, export and fine-tuning use; the
//! export gives the file's tensors back bit for bit and re-imports to the same model; broken
//! or foreign files are refused with exit 2 and nothing written.

mod common;
use common::scratch;

use common::{arg, assert_fails, assert_ok, mmssl, read_json, read_text, stdout, tiny, write_file};
use mmssl_protocol::interop::StateDict;
use std::path::{Path, PathBuf};

/// A named f32 tensor: (name, shape, values).
type Named = (String, Vec<usize>, Vec<f32>);

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../mmssl-protocol/tests/fixtures/authors")
        .join(name)
}

fn import(files: &[&Path], out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["import"];
    args.extend(files.iter().map(|f| arg(f)));
    args.extend(["--out", arg(out), "--eval-epochs", "1", "--quiet"]);
    args.extend(extra);
    mmssl(&args)
}

fn export(run: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["export", arg(run), "--out", arg(out)];
    args.extend(extra);
    mmssl(&args)
}

/// Every tensor of `a` equals `b`'s, bit for bit, and they name the same tensors.
fn same_tensors(a: &StateDict, b: &StateDict) {
    let names = |d: &StateDict| d.tensors.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(a), names(b));
    for (name, t) in &a.tensors {
        let u = &b.tensors[name];
        assert_eq!(t.shape, u.shape, "{name}");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&t.values), bits(&u.values), "{name}");
    }
}

/// The training loss of the first epoch in a run's metrics.jsonl.
fn first_loss(run: &Path) -> f64 {
    let text = read_text(run.join("metrics.jsonl"));
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    line["train_loss"].as_f64().unwrap()
}

#[test]
fn the_authors_checkpoint_is_evaluated_explained_exported_and_fine_tuned() {
    let (dir, run) = scratch("imported");
    let pt = fixture("dim2d.pt");
    let res = import(&[&pt], &run, &[]);
    assert_ok(&res);
    let out = stdout(&res);
    assert!(out.contains("58 tensors imported"), "{out}");
    assert!(out.contains("CR-XX-CC;variant=authors"), "{out}");
    let info = read_json(run.join("run.json"));
    assert_eq!(info["imported"]["sources"].as_array().unwrap().len(), 2);
    assert_eq!(
        info["imported"]["num_batches_tracked"]["_encoder.1._layers.2._layer.1.num_batches_tracked"],
        17
    );
    // Linear evaluation and explanations work on it like on a pretrained run.
    assert_ok(&common::on_run("linear-eval", &run, &["--quiet"]));
    let eval = read_json(run.join("eval.json"));
    assert_eq!(eval["linear_eval"].as_array().unwrap().len(), 2);
    let res = mmssl(&[
        "explain",
        arg(&run),
        "--quiet",
        "--target",
        "decision",
        "--limit",
        "20",
        "--steps",
        "2",
    ]);
    assert_ok(&res);
    // Exported, the encoders (and heads, and the whole Dim) are the file's tensors bit for bit.
    let exp = dir.path().join("export");
    assert_ok(&export(&run, &exp, &["--heads"]));
    let original = StateDict::read(&pt).unwrap();
    let exported = StateDict::read(&exp.join("dim.safetensors")).unwrap();
    same_tensors(&exported, &original);
    for m in 0..2 {
        let encoder = StateDict::read(&exp.join(format!("encoder_{m}.safetensors"))).unwrap();
        let prefix = format!("_encoder.{m}.");
        assert!(!encoder.tensors.is_empty());
        for (name, t) in &encoder.tensors {
            assert_eq!(
                t.values,
                original.tensors[&format!("{prefix}{name}")].values,
                "{name}"
            );
        }
        let json = read_json(exp.join(format!("encoder_{m}.json")));
        assert_eq!(json["dcgan_encoder"]["dim_cls"][0], "8_1");
        assert_eq!(json["dcgan_encoder"]["dim_h"], 32);
        let check = StateDict::read(&exp.join(format!("check_{m}.safetensors"))).unwrap();
        assert_eq!(check.tensors["z"].shape, vec![4, 64]);
        assert_eq!(check.tensors["conv"].shape, vec![4, 64, 8, 8]);
    }
    // mmssl -> safetensors -> mmssl -> safetensors: the same numbers.
    let again = dir.path().join("reimported");
    assert_ok(&import(&[&exp.join("dim.safetensors")], &again, &[]));
    let exp2 = dir.path().join("export2");
    assert_ok(&export(&again, &exp2, &[]));
    same_tensors(
        &StateDict::read(&exp2.join("dim.safetensors")).unwrap(),
        &exported,
    );
    // Fine-tuning starts from the imported weights (and takes the imported run's method).
    let tuned = dir.path().join("tuned");
    assert_ok(&tiny("run", &tuned, &["--init-from", arg(&run), "--quiet"]));
    let config = read_text(tuned.join("config.toml"));
    assert!(
        config.contains("variant=authors") && config.contains("init_from"),
        "{config}"
    );
    let fresh = dir.path().join("fresh");
    let method = ["--method", "CR-XX-CC;variant=authors", "--quiet"];
    assert_ok(&tiny("run", &fresh, &method));
    assert_ne!(first_loss(&tuned), first_loss(&fresh));
    // Another method cannot start from it; nothing is written.
    let other = dir.path().join("other");
    let (from, out) = (arg(&run), arg(&other));
    let res = mmssl(&[
        "run",
        "--method",
        "CR-XX-CC",
        "--init-from",
        from,
        "--out",
        out,
    ]);
    assert_fails(&res, &["--init-from", "CR-XX-CC;variant=authors"]);
    assert!(!other.exists());
}

#[test]
fn an_mmssl_run_exports_its_encoders_and_refuses_heads_the_authors_cannot_load() {
    let (dir, run) = scratch("run");
    assert_ok(&tiny("run", &run, &["--quiet"]));
    let exp = dir.path().join("export");
    let res = export(&run, &exp, &["--heads"]);
    assert_fails(&res, &["shortcut bias", "variant=authors"]);
    assert_ok(&export(&run, &exp, &["--overwrite"]));
    let dim = StateDict::read(&exp.join("dim.safetensors")).unwrap();
    assert!(dim.tensors.keys().all(|k| k.starts_with("_encoder.")));
    // The run trained 2 steps (64 pairs, batch 32): the counters say so.
    let encoder = StateDict::read(&exp.join("encoder_0.safetensors")).unwrap();
    assert_eq!(
        encoder.tensors["_layers.1._layer.1.num_batches_tracked"].values,
        vec![2.0]
    );
    // An export folder that is not empty is refused without --overwrite.
    assert_fails(&export(&run, &exp, &[]), &["not empty", "--overwrite"]);
    // Encoders only, imported back, evaluate as before: the same test features.
    let back = dir.path().join("back");
    assert_fails(
        &import(&[&exp.join("dim.safetensors")], &back, &[]),
        &["no latent head", "--encoders-only"],
    );
    assert!(!back.exists());
    // The mmssl variant's weights need the mmssl definition only where heads differ: an
    // encoder-only import takes the authors' variant, which computes the same encoder.
    assert_ok(&import(
        &[&exp.join("dim.safetensors")],
        &back,
        &["--encoders-only"],
    ));
    let info = read_json(back.join("run.json"));
    assert!(!info["imported"]["kept"].as_array().unwrap().is_empty());
}

#[test]
fn broken_foreign_or_mismatched_files_are_refused_and_nothing_is_written() {
    let (dir, out) = scratch("never");
    let original = std::fs::read(fixture("dim2d.pt")).unwrap();
    let truncated = write_file(dir.path(), "truncated.pt", &original[..original.len() / 2]);
    let evil = write_file(dir.path(), "evil.pt", b"\x80\x02}q\x00X\x06\x00\x00\x00weightq\x01cposix\nsystem\nq\x02X\n\x00\x00\x00echo pwnedq\x03\x85q\x04Rq\x05s.");
    let cases: Vec<(Vec<PathBuf>, Vec<&str>, Vec<&str>)> = vec![
        (vec![truncated], vec![], vec!["truncated.pt", "truncated"]),
        (vec![evil], vec![], vec!["refused", "posix.system"]),
        // 3D weights for a 2D run.
        (
            vec![fixture("dim3d_catalyst.pth")],
            vec![],
            vec!["wrong architecture", "3D"],
        ),
        // The same source twice.
        (
            vec![fixture("dim2d.pt"), fixture("dim2d.pt")],
            vec![],
            vec!["also in"],
        ),
        // A baseline cannot hold the authors' model; nor can a contradicting option.
        (
            vec![fixture("dim2d.pt")],
            vec!["--method", "dccae"],
            vec!["contrastive"],
        ),
        (
            vec![fixture("dim2d.pt")],
            vec!["--method", "CR-XX-CC;variant=mmssl"],
            vec!["variant=mmssl contradicts"],
        ),
    ];
    for (files, extra, needles) in cases {
        let paths: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
        assert_fails(&import(&paths, &out, &extra), &needles);
        assert!(!out.exists(), "{needles:?}: nothing may be written");
    }
    // An unexpected tensor, a mis-shaped one: the state dict re-written as safetensors.
    let dict = StateDict::read(&fixture("dim2d.pt")).unwrap();
    let write = |name: &str, edit: &dyn Fn(&mut Vec<Named>)| {
        let mut tensors: Vec<Named> = dict
            .tensors
            .iter()
            .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
            .map(|(k, t)| (k.clone(), t.shape.clone(), t.values.clone()))
            .collect();
        edit(&mut tensors);
        let path = dir.path().join(name);
        write_safetensors(&path, &tensors, false);
        path
    };
    let extra = write("extra.safetensors", &|t| {
        t.push(("_encoder.0.extra".into(), vec![1], vec![0.0]))
    });
    assert_fails(
        &import(&[&extra], &out, &[]),
        &["no place for", "_encoder.0.extra"],
    );
    let misshaped = write("misshaped.safetensors", &|t| {
        let w = t
            .iter_mut()
            .find(|(k, _, _)| k == "_latent_heads.1._head.1.weight")
            .unwrap();
        w.1 = vec![32, 128];
    });
    assert_fails(
        &import(&[&misshaped], &out, &[]),
        &["mis-shaped", "_latent_heads.1._head.1.weight"],
    );
    let missing = write("missing.safetensors", &|t| {
        t.retain(|(k, _, _)| k != "_encoder.1._layers.2._layer.1.bias")
    });
    assert_fails(
        &import(&[&missing], &out, &[]),
        &["missing", "_layers.2._layer.1.bias"],
    );
    // The authors' unimodal runs: one file per source; one alone is not a two-modality model.
    let source = |s: usize| {
        let prefixes = [
            format!("_encoder.{s}."),
            format!("_conv_heads.{s}."),
            format!("_latent_heads.{s}."),
        ];
        write(&format!("source{s}.safetensors"), &|t| {
            t.retain(|(k, _, _)| prefixes.iter().any(|p| k.starts_with(p.as_str())))
        })
    };
    let (zero, one) = (source(0), source(1));
    assert_fails(&import(&[&one], &out, &[]), &["no file holds source 0"]);
    assert!(!out.exists());
    let unimodal = dir.path().join("unimodal");
    let res = import(&[&zero, &one], &unimodal, &[]);
    assert_ok(&res);
    assert!(stdout(&res).contains("source 1 of"), "{}", stdout(&res));
    assert_ok(&common::on_run("analyze", &unimodal, &["--quiet"]));
    assert!(unimodal.join("similarity.json").is_file());
    // Double precision is converted, with a note.
    let doubles = dir.path().join("doubles.safetensors");
    let all: Vec<Named> = dict
        .tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.shape.clone(), t.values.clone()))
        .collect();
    write_safetensors(&doubles, &all, true);
    let converted = dir.path().join("converted");
    let res = import(&[&doubles], &converted, &[]);
    assert_ok(&res);
    assert!(
        stdout(&res).contains("float64 tensor(s) converted to float32"),
        "{}",
        stdout(&res)
    );
    // Without the counters the rest imports (they are recorded, not needed).
    assert!(!out.exists());
    let no_counters = write("plain.safetensors", &|_| {});
    assert_ok(&import(&[&no_counters], &out, &[]));
    // A folder holding a run is refused.
    assert_fails(&import(&[&no_counters], &out, &[]), &["earlier run"]);
}

/// A safetensors file of `tensors`, stored as f32 or, with `double`, as f64, written by the
/// `safetensors` crate (the format's reference implementation).
fn write_safetensors(path: &Path, tensors: &[Named], double: bool) {
    use safetensors::{Dtype, tensor::TensorView};
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, values)| match double {
            true => values
                .iter()
                .flat_map(|v| (*v as f64).to_le_bytes())
                .collect(),
            false => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        })
        .collect();
    let dtype = if double { Dtype::F64 } else { Dtype::F32 };
    let views = tensors.iter().zip(&bytes).map(|((name, shape, _), data)| {
        (
            name.clone(),
            TensorView::new(dtype, shape.clone(), data).unwrap(),
        )
    });
    safetensors::serialize_to_file(views, None, path).unwrap();
}

#[test]
fn the_authors_3d_checkpoint_becomes_a_cohort_run_and_exports_back_bit_for_bit() {
    let (dir, cohort) = scratch("cohort");
    common::synth_cohort(&cohort, &[]);
    let manifest = cohort.join("manifest.csv");
    let run = dir.path().join("run");
    let pth = fixture("dim3d_catalyst.pth");
    let extra = ["--dataset", "oasis3", "--manifest", arg(&manifest)];
    let res = import(&[&pth], &run, &extra);
    assert_ok(&res);
    assert!(
        stdout(&res).contains("CR-XX-CC;variant=authors;width=4"),
        "{}",
        stdout(&res)
    );
    // The cohort's split lands in the run folder with the weights; no scratch folder stays.
    assert!(run.join("split.json").is_file() && run.join("landmarks.json").is_file());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("import"))
        .collect();
    assert!(leftovers.is_empty());
    assert_ok(&common::on_run("linear-eval", &run, &["--quiet"]));
    let exp = dir.path().join("export");
    assert_ok(&export(&run, &exp, &["--heads"]));
    same_tensors(
        &StateDict::read(&exp.join("dim.safetensors")).unwrap(),
        &StateDict::read(&pth).unwrap(),
    );
    let check = StateDict::read(&exp.join("check_1.safetensors")).unwrap();
    assert_eq!(check.tensors["conv"].shape, vec![2, 16, 8, 8, 8]);
    let json = read_json(exp.join("encoder_1.json"));
    assert_eq!(json["dcgan_encoder"]["input_size"], 64);
    assert_eq!(json["dcgan_encoder"]["dim_cls"][0], "8_2");
}
