//! # mmssl-protocol
//!
//! The protocol of Fedorov et al. (arXiv:2012.13623) as a library: what `mmssl run` and
//! `mmssl experiment` do, for any method, from Rust.
//!
//! - [`RunConfig`]: one run, complete and serde-serialisable (data, method, training,
//!   evaluation, analysis, output), read from and written to TOML and JSON, validated with
//!   errors that name the setting.
//! - [`MethodSpec`] and [`Registry`]: one namespace for the objectives of the taxonomy
//!   (`CR-XX-CC`, `XX;estimator=jsd;critic=cosine(0.1)`), the baselines
//!   (`dccae;cca_dim=10`, `mmvae;k=10;estimator=dreg`) and the methods of downstream crates
//!   ([`MethodFactory`], [`Registry::register`]).
//! - [`run`] / [`run_with`]: pretraining with checkpoints and exact resume, linear evaluation
//!   of each modality against the same model at its random initialisation, similarity of the
//!   modalities, the run folder (`config.toml`, `run.json`, `metrics.jsonl`, `eval.json`);
//!   progress through an [`Observer`].
//! - Evaluations beyond the linear probe ([`neighbourhood`]): k-NN per modality, cross-modal
//!   retrieval in `z` and in the shared canonical subspace, t-SNE maps of the test
//!   representations with their trustworthiness, each beside the random-initialisation
//!   reference (the numbers from [`mmssl_similarity`]: [`mmssl_similarity::Knn`],
//!   [`mmssl_similarity::Retrieval`], [`mmssl_similarity::Tsne`]).
//! - [`Grid`]: methods x datasets x folds x seeds, resumable, aggregated into
//!   `results.csv`, `results.md` and figures ([`aggregate`]).
//!
//! # Example
//!
//! A tiny run on the MNIST test split shipped with mmssl:
//!
//! ```no_run
//! use mmssl_protocol::{RunConfig, run};
//! use burn::tensor::Device;
//!
//! let mut config = RunConfig::default();
//! config.method = "XX;estimator=jsd".parse()?;
//! config.data.train_limit = Some(512);
//! config.training.epochs = 1;
//! config.evaluation.epochs = Some(2);
//! config.output.dir = "runs/tiny".into();
//! let report = run(&config, &Device::flex(), &mut mmssl_protocol::Quiet)?;
//! println!("{}", report.summary());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::field_reassign_with_default))]

pub mod aggregate;
mod attribution;
mod config;
mod datasets;
mod error;
mod evalcache;
pub mod explain;
mod folder;
mod grid;
pub mod interop;
pub mod neighbourhood;
mod observe;
mod online;
pub mod plots;
mod records;
mod registry;
mod report;
mod run;
mod session;
pub mod signals;
pub mod slurm;
mod spec;
pub mod status;
mod terminal;
mod weights;

pub use config::{
    AnalysisConfig, AugmentKind, BackendKind, DEFAULT_KNN_K, DataConfig, DatasetKind,
    EvaluationConfig, OutputConfig, RunConfig, ScheduleKind, TrainingConfig, load_run_config,
};
pub use datasets::{Datasets, load_datasets, load_idx};
pub use error::{Cause, ProtocolError, Result};
pub use explain::{
    AtlasSetting, ExplainConfig, ExplainReport, ExplainSet, ExplainTarget, explain, explain_with,
};
pub use folder::{
    FolderLock, LOCK_FILE, RUN_ARTIFACTS, RUN_RESULTS, check_fresh, claim_new, prepare_fresh,
    utc_stamp, write_atomic,
};
pub use grid::{Cell, Grid, GridOptions, slug};
// The method-building interface (from `mmssl-train`): a `MethodFactory` registered under a
// name builds its `Method` model from the options of its spec. (A doc comment on a grouped
// re-export would become every item's summary.)
pub use mmssl_train::{BuildSetup, Method, MethodFactory, MethodOption, MethodOptions};
pub use online::OnlineEvaluation;
pub use registry::{Registry, ResolvedMethod};
pub use report::{KnnEval, MapRecord, RetrievalEval, RetrievalSpace};
pub use run::{ModalityEval, Observer, Phase, Phases, RunReport, continue_command, run, run_with};
pub use slurm::{EXIT_INTERRUPTED, SlurmOptions, SlurmResources, Submission};
pub use spec::{DEFAULT_METHOD, MethodSpec};
pub use status::{CELLS_FILE, CellRecord, CellState, CellStatus, GridStatus, grid_status};
pub use terminal::{Terminal, print_line};

/// The baselines (`mmssl-baselines`), for methods built from them.
pub use mmssl_baselines as baselines;
// The training loop's progress interface and metrics, which an `Observer` extends, and an
// observer that reports nothing.
pub use mmssl_train::{EpochMetrics, Progress, Quiet};
