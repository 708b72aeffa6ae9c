//! The flat keys of the `mmssl run` flags, as `config.toml` files of earlier versions and grid
//! `[settings]` hold them, mapped onto the sections; and TOML errors named by their field.

/// Flat keys (the `mmssl run` flags) and the section each belongs to.
pub(super) const FLAT_KEYS: &[(&str, &str, &str)] = &[
    ("dataset", "data", "dataset"),
    ("data_dir", "data", "data_dir"),
    ("second_data_dir", "data", "second_data_dir"),
    ("manifest", "data", "manifest"),
    ("train_limit", "data", "train_limit"),
    ("fold", "data", "fold"),
    ("augment", "data", "augment"),
    ("epochs", "training", "epochs"),
    ("batch_size", "training", "batch_size"),
    ("lr", "training", "lr"),
    ("max_lr", "training", "max_lr"),
    ("schedule", "training", "schedule"),
    ("workers", "training", "workers"),
    ("init_from", "training", "init_from"),
    ("eval_epochs", "evaluation", "epochs"),
    ("bn_train_mode", "evaluation", "bn_train_mode"),
    ("knn_k", "evaluation", "knn_k"),
    ("knn_metric", "evaluation", "knn_metric"),
    ("knn_voting", "evaluation", "knn_voting"),
    ("knn_temperature", "evaluation", "knn_temperature"),
    ("retrieval", "evaluation", "retrieval"),
    ("retrieval_cca_dims", "evaluation", "retrieval_cca_dims"),
    ("online_every", "evaluation", "online_every"),
    ("online_items", "evaluation", "online_items"),
    ("online_probe_epochs", "evaluation", "online_probe_epochs"),
    ("maps", "analysis", "maps"),
    ("map_points", "analysis", "map_points"),
    ("map_perplexity", "analysis", "map_perplexity"),
    ("out", "output", "dir"),
    ("resume", "output", "resume"),
];

/// Flat keys of the baselines' former flags: (key, the methods it applies to, the option, its
/// default, which a `config.toml` of an earlier version holds for every method).
pub(super) const FLAT_METHOD_OPTIONS: &[(&str, &[&str], &str, &str)] = &[
    ("mmvae_k", &["mmvae"], "k", "10"),
    ("mmvae_estimator", &["mmvae"], "estimator", "dreg"),
    ("mmvae_learn_prior", &["mmvae"], "learn_prior", "false"),
    ("cca_dim", &["dccae", "cr-cca"], "cca_dim", "10"),
    ("cca_norm", &["dccae", "cr-cca"], "cca_norm", "trace"),
    ("cca_top_k", &["dccae", "cr-cca"], "cca_top_k", ""),
    ("cca_reg", &["dccae", "cr-cca"], "cca_reg", "0.001"),
    ("lcca_components", &["lcca"], "components", "64"),
];

/// Keys of the command line that are not settings of a run (`mmssl run --quiet`, `--config`).
pub(super) const FLAT_IGNORED: &[&str] = &["quiet", "config"];

pub(super) fn scalar_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Removes the baselines' former flat keys (`cca_dim`, `mmvae_k`, ...) from `table`: (key,
/// value as text).
pub(crate) fn take_flat_method_options(table: &mut toml::Table) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        let flat = key.replace('-', "_");
        if FLAT_METHOD_OPTIONS.iter().any(|(k, ..)| *k == flat)
            && let Some(v) = table.remove(&key)
        {
            out.push((flat, scalar_text(&v)));
        }
    }
    out
}

/// `section.key: message` for a TOML error in `text` (the key and section found from the
/// error's position).
pub(super) fn field_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    let Some(span) = e.span() else { return msg };
    let start = span.start.min(text.len());
    let before = &text[..start];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = text[line_start..line_end].trim();
    let key = line.split('=').next().unwrap_or("").trim();
    if key.is_empty() || key.starts_with('[') {
        return msg;
    }
    let section = before
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('['))
        .map(|l| l.trim().trim_matches(['[', ']']).to_string());
    match section {
        Some(section) => format!("`{section}.{key}`: {msg}"),
        None => format!("`{key}`: {msg}"),
    }
}
