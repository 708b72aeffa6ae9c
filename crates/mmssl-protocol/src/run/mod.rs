//! One run of the protocol: pretrain the method (or fit linear CCA), evaluate each modality
//! linearly against the same model at its random initialisation, compare the modalities, and
//! write the run folder.
//!
//! The run folder holds `config.toml` (the complete [`RunConfig`]), `run.json` (version, git
//! revision, device, resolved training and evaluation settings), `metrics.jsonl` (one line per
//! pretraining epoch), `checkpoints/` and `eval.json` (the [`RunReport`]).

use crate::config::{RunConfig, load_run_config};
use crate::error::{ProtocolError, Result};
use crate::folder::{FolderLock, write_atomic};
use crate::registry::Registry;
use crate::session::{Loaded, Session, settings};
use burn::tensor::Device;
use mmssl_similarity::{Similarity, SimilarityReport};
use mmssl_train::Checkpoints;
use std::path::Path;
use std::time::Instant;

pub use crate::observe::{Observer, Phase, Phases};
use crate::report::MapRecord;
pub use crate::report::{ModalityEval, RunReport};

#[cfg(test)]
mod tests;

/// Runs all phases of `config` with the built-in methods on `device` (the autodiff wrapper is
/// added when missing) and returns the report.
pub fn run(config: &RunConfig, device: &Device, observer: &mut dyn Observer) -> Result<RunReport> {
    run_with(config, &Registry::builtin(), Phases::ALL, device, observer)
}

/// Runs the chosen `phases` of `config`, its method looked up in `registry`. Evaluation and
/// analysis use the best checkpoint of the run folder. Writes `eval.json` (evaluation, with
/// the similarity when analysed too) or `similarity.json` (analysis alone).
pub fn run_with(
    config: &RunConfig,
    registry: &Registry,
    phases: Phases,
    device: &Device,
    observer: &mut dyn Observer,
) -> Result<RunReport> {
    config.validate(registry)?;
    let method = registry.resolve(&config.method)?;
    let out = &config.output.dir.clone();
    let (eval_epochs, train_config, eval_config) = settings(config);
    // The method in its canonical spelling: `cc-xx-cr` and `CR-XX-CC` are one run.
    // Data paths absolute, so the saved configuration means the same from anywhere.
    let mut canonical = config.clone();
    canonical.method = method.spec().clone();
    canonical.absolute_paths();
    let config = &canonical;
    // A model to start from is checked before anything is written.
    if let (true, false, Some(from)) = (
        phases.pretrain,
        config.output.resume,
        &config.training.init_from,
    ) {
        check_init_from(from, config.method.to_string().as_str(), registry)?;
    }
    // What refuses the folder is found before the lock, so that a refusal writes nothing
    // (not even the folder or its lock file), and checked again once the lock is held.
    let refusal = || -> Result<()> {
        if phases.pretrain && config.output.resume {
            if !out.join("config.toml").exists() {
                return Err(ProtocolError::NothingToResume { dir: out.clone() });
            }
            let saved = saved_config(out, registry)?;
            let differences = saved.identity_differences(config)?;
            if !differences.is_empty() {
                return Err(ProtocolError::ResumeMismatch {
                    dir: out.clone(),
                    differences,
                });
            }
            // What the checkpoint itself recorded when the run started (config.toml can be
            // edited; the checkpoint's record is checksummed).
            let checkpoints = Checkpoints::open(out.join("checkpoints"));
            if let Some(record) = checkpoints.saved_record()? {
                let differences = config.checkpoint_differences(record)?;
                if !differences.is_empty() {
                    return Err(ProtocolError::CheckpointMismatch {
                        dir: out.clone(),
                        differences,
                    });
                }
            }
        } else if phases.pretrain {
            crate::folder::check_fresh(out, config.output.overwrite)?;
        }
        Ok(())
    };
    refusal()?;
    // One writer per folder; the lock goes when the run ends, however it ends.
    let _lock = FolderLock::acquire(out)?;
    if phases.pretrain && !config.output.resume {
        // Checks the folder again, now that no other run can change it, and clears it.
        crate::folder::prepare_fresh(out, config.output.overwrite)?;
    } else {
        refusal()?;
    }
    if phases.pretrain {
        // An unwritable folder fails now, not after the first epoch (and a run that fails
        // before its first file leaves nothing that would block the next one).
        let probe = out.join(".probe");
        std::fs::write(&probe, b"")
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|e| ProtocolError::write(&probe, e))?;
    }
    // Labels that can only fail the evaluation fail now, before hours of pretraining.
    let labels = phases.evaluate || (phases.pretrain && method.needs_labels());
    let loaded = Loaded::new(config, device, labels, observer)?;
    let (data, device) = (&loaded.data, &loaded.device);
    let sizes = data.sizes();
    if phases.pretrain {
        let details = serde_json::json!({
            "sizes": sizes,
            "train": train_config,
            "linear_eval": eval_config,
        });
        // Results already beside the checkpoints keep the settings that made them in
        // config.toml; an evaluation or analysis run now records its own when it writes them.
        let mut record = config.clone();
        if let Some(earlier) = results_config(out) {
            if !phases.evaluate
                && !config
                    .settings_differing(&earlier, &["evaluation", "analysis"])
                    .is_empty()
            {
                observer.warning(&format!(
                    "{} holds results made with the evaluation and analysis settings of its \
                     config.toml, which stay there; to evaluate with the new ones: {}",
                    out.display(),
                    continue_command(config, Phases::EVALUATE)
                ));
            }
            record.evaluation = earlier.evaluation;
            record.analysis = earlier.analysis;
        }
        write_run_record(&record, device, details)?;
    }
    for w in method.warnings(&train_config) {
        observer.warning(&w);
    }
    let mut session = loaded.session(config, &train_config, &eval_config, phases, observer);
    let crate::session::Evaluation {
        linear,
        test_features: test_z,
        random_test_features: random_z,
        pretrain_seconds,
        eval_seconds,
        retrieval,
        mut notes,
    } = method.execute(&mut session)?;
    let t2 = Instant::now();
    let to_nd = crate::neighbourhood::to_matrix;
    let (similarity, similarity_error) =
        if phases.analyze && config.analysis.enabled && test_z.len() >= 2 {
            session.observer.phase(Phase::Analysing);
            let sim = Similarity::new().svcca_threshold(config.analysis.svcca_threshold)?;
            match analyse(&sim, &to_nd(&test_z[0]), &to_nd(&test_z[1])) {
                Ok(r) => (Some(r), None),
                Err(e) => {
                    session.observer.warning(&format!(
                        "the similarity of the modalities is not computed: {e}"
                    ));
                    (None, Some(e))
                }
            }
        } else {
            (None, None)
        };
    let mut maps = Vec::new();
    if phases.analyze && config.analysis.maps && !test_z.is_empty() {
        session.observer.phase(Phase::Mapping);
        let (records, map_notes) = crate::neighbourhood::embedding_maps(
            &test_z,
            &random_z,
            &config.analysis,
            config.data.dataset,
            config.data.dataset.classes(),
            config.seed,
            out,
        )?;
        maps = records;
        notes.extend(map_notes);
    }
    // Evaluation alone keeps the similarity and the maps an earlier analysis of this folder
    // made.
    let (similarity, maps) = match (similarity, maps) {
        (None, maps) if phases.evaluate && !phases.analyze => {
            let (s, m) = earlier_analysis(out);
            (s, if maps.is_empty() { m } else { maps })
        }
        (s, maps) => (s, maps),
    };
    let report = RunReport {
        method: method.spec().to_string(),
        dataset: config.data.dataset,
        sizes,
        linear_eval: linear,
        similarity,
        similarity_error,
        retrieval,
        maps,
        notes,
        seconds: [pretrain_seconds, eval_seconds, t2.elapsed().as_secs_f64()],
        eval_epochs,
    };
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
    if phases.evaluate {
        write_atomic(&out.join("eval.json"), &json)?;
        let sections: &[&str] = match phases.analyze {
            true => &["evaluation", "analysis"],
            false => &["evaluation"],
        };
        record_sections(config, sections)?;
    } else if phases.analyze {
        write_atomic(&out.join("similarity.json"), &json)?;
        record_sections(config, &["analysis"])?;
    }
    Ok(report)
}

/// The `mmssl` command that continues a run of `config` stopped during `phases` (SIGTERM,
/// Ctrl-C): `mmssl run --resume --out DIR` or `mmssl pretrain --resume --out DIR` (a resumed
/// run takes its settings from the folder's `config.toml`), or the phase's own command with
/// `--backend` and every evaluation and analysis setting that differs from the folder's
/// `config.toml` as `--set KEY=VALUE`, so that it repeats what was interrupted.
pub fn continue_command(config: &RunConfig, phases: Phases) -> String {
    let dir = config.output.dir.display();
    match (phases.pretrain, phases.evaluate) {
        (true, true) => format!("mmssl run --resume --out {dir}"),
        (true, false) => format!("mmssl pretrain --resume --out {dir}"),
        (false, evaluate) => {
            let command = if evaluate { "linear-eval" } else { "analyze" };
            let mut s = format!("mmssl {command} --run {dir}");
            if let Ok(saved) = load_run_config(&config.output.dir) {
                if saved.backend != config.backend {
                    s += &format!(" --backend {}", config.backend.name());
                }
                for (key, value) in config.settings_differing(&saved, &["evaluation", "analysis"]) {
                    let plain = value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c));
                    match plain {
                        true => s += &format!(" --set {key}={value}"),
                        false => s += &format!(" --set '{key}={}'", value.replace('\'', "'\\''")),
                    }
                }
            }
            s
        }
    }
}

/// Saves into the folder's `config.toml` the `sections` (`evaluation`, `analysis`) of
/// `config` that produced the results just written, so that `config.toml` describes every file
/// beside it (and a grid sees a cell evaluated with other settings).
fn record_sections(config: &RunConfig, sections: &[&str]) -> Result<()> {
    let out = &config.output.dir;
    let Ok(mut saved) = load_run_config(out) else {
        return Ok(());
    };
    let before = saved.clone();
    for section in sections {
        match *section {
            "evaluation" => {
                saved.evaluation = config.evaluation.clone();
                saved.evaluation.epochs = Some(config.evaluation.epochs_for(config.data.dataset));
            }
            _ => saved.analysis = config.analysis.clone(),
        }
    }
    match saved == before {
        true => Ok(()),
        false => saved.save(out.join("config.toml")),
    }
}

/// Runs `f` with the method of the run configured by `config` (a run folder's saved
/// configuration) and a session on its loaded data, under the folder's lock: the entry to the
/// phases after pretraining that are not a run's own (explanations).
pub(crate) fn with_session<R>(
    config: &RunConfig,
    registry: &Registry,
    device: &Device,
    observer: &mut dyn Observer,
    f: impl FnOnce(&crate::registry::ResolvedMethod, &mut Session<'_>) -> Result<R>,
) -> Result<R> {
    config.validate(registry)?;
    let method = registry.resolve(&config.method)?;
    let (_, train_config, eval_config) = settings(config);
    let _lock = FolderLock::acquire(&config.output.dir)?;
    let loaded = Loaded::new(config, device, true, observer)?;
    let phases = Phases::new(false, false, false);
    let mut session = loaded.session(config, &train_config, &eval_config, phases, observer);
    f(&method, &mut session)
}

/// The similarity of two modalities' test representations; an input the indices are not
/// defined for (fewer than two items, a non-finite value, a modality whose representations are
/// all the same) is a message for the report, not a failure of the run: training and linear
/// evaluation stand.
fn analyse(
    sim: &Similarity,
    a: &ndarray::Array2<f64>,
    b: &ndarray::Array2<f64>,
) -> std::result::Result<SimilarityReport, String> {
    sim.report(a.view(), b.view()).map_err(|e| e.to_string())
}

/// The configuration saved in `dir` when results (`eval.json`, `similarity.json`) are there.
fn results_config(dir: &Path) -> Option<RunConfig> {
    ["eval.json", "similarity.json"]
        .iter()
        .any(|f| dir.join(f).exists())
        .then(|| load_run_config(dir).ok())
        .flatten()
}

/// The similarity and the maps an earlier `eval.json` or `similarity.json` of `dir` holds.
fn earlier_analysis(dir: &Path) -> (Option<SimilarityReport>, Vec<MapRecord>) {
    let earlier = |key: &str| {
        ["eval.json", "similarity.json"].iter().find_map(|f| {
            let text = std::fs::read_to_string(dir.join(f)).ok()?;
            let mut v: serde_json::Value = serde_json::from_str(&text).ok()?;
            Some(v[key].take()).filter(|v| !v.is_null())
        })
    };
    (
        earlier("similarity").and_then(|v| serde_json::from_value(v).ok()),
        earlier("maps")
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default(),
    )
}

/// The configuration saved in `dir`, its method in canonical spelling and its data paths
/// absolute (as a new run's are), ready to compare.
pub(crate) fn saved_config(dir: &Path, registry: &Registry) -> Result<RunConfig> {
    let mut saved = load_run_config(dir)?;
    if let Ok(m) = registry.resolve(&saved.method) {
        saved.method = m.spec().clone();
    }
    saved.absolute_paths();
    Ok(saved)
}

/// An error unless `from` (`training.init_from`) names a checkpoint, and, when it is a run
/// folder, one of the method `method` (canonical spelling): a model of another method or
/// other options (width, variant, sizes) cannot start this run.
pub(crate) fn check_init_from(from: &Path, method: &str, registry: &Registry) -> Result<()> {
    crate::weights::init_checkpoint(from)?;
    if from.join("config.toml").is_file() {
        let theirs = saved_config(from, registry)?.method.to_string();
        if theirs != method {
            return Err(ProtocolError::Config(format!(
                "--init-from {}: that run's model is `{theirs}`, this run's `{method}`; start \
                 from a run of the same method and options (leave --method out to take that \
                 run's)",
                from.display()
            )));
        }
    }
    Ok(())
}

/// Writes a new run folder's record: `config.toml` (the configuration that reproduces it, with
/// its evaluation epochs and without `resume`/`overwrite`) and `run.json` (versions, backend,
/// device, seed, method, and `details`' fields).
pub(crate) fn write_run_record(
    config: &RunConfig,
    device: &Device,
    details: serde_json::Value,
) -> Result<()> {
    let out = &config.output.dir;
    let mut saved = config.clone();
    saved.output.resume = false;
    saved.output.overwrite = false;
    saved.evaluation.epochs = Some(config.evaluation.epochs_for(config.data.dataset));
    saved.save(out.join("config.toml"))?;
    let mut run_info = serde_json::json!({
        "mmssl_version": env!("CARGO_PKG_VERSION"),
        "git_revision": option_env!("MMSSL_GIT_REVISION"),
        "backend": config.backend,
        "device": format!("{device:?}"),
        "seed": config.seed,
        "method": config.method.to_string(),
    });
    if let (Some(info), serde_json::Value::Object(more)) = (run_info.as_object_mut(), details) {
        info.extend(more);
    }
    write_atomic(
        &out.join("run.json"),
        &serde_json::to_string_pretty(&run_info).unwrap_or_default(),
    )
}
