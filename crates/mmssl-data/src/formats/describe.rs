//! Describing a dataset file, detected from its content: IDX (raw or `.gz`), MATLAB `.mat`,
//! NIfTI-1/2 and cohort manifests (`.csv`). What `mmssl data info` prints, as text or JSON.

use crate::error::{DataError, Result};
use crate::{Diagnosis, Manifest, MatData};
use flate2::read::GzDecoder;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A description of a file: its format and ordered fields, as text or JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    /// The file.
    pub path: PathBuf,
    /// The format, in words (`IDX`, `MATLAB .mat`, `NIfTI-1`, `NIfTI-2`, `cohort manifest`).
    pub format: String,
    /// `(key, value, text)`: the JSON value and how it reads in text.
    pub fields: Vec<(String, Value, String)>,
}

impl Description {
    fn new(path: &Path, format: &str) -> Self {
        Description {
            path: path.to_path_buf(),
            format: format.into(),
            fields: Vec::new(),
        }
    }

    fn add(&mut self, key: &str, value: Value, text: impl Into<String>) {
        self.fields.push((key.into(), value, text.into()));
    }

    /// The value of a field.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|f| f.0 == key).map(|f| &f.1)
    }

    /// The JSON object (`path`, `format` and every field).
    pub fn json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("path".into(), json!(self.path.display().to_string()));
        m.insert("format".into(), json!(self.format));
        for (k, v, _) in &self.fields {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }

    /// Human-readable lines.
    pub fn text(&self) -> String {
        let mut s = format!("{}: {}\n", self.path.display(), self.format);
        for (k, _, t) in &self.fields {
            let label = k
                .trim_end_matches("_mm")
                .trim_end_matches("_s")
                .replace('_', " ");
            s.push_str(&format!("  {:<24} {t}\n", format!("{label}:")));
        }
        s.pop();
        s
    }
}

fn dims_text(dims: &[usize]) -> String {
    dims.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(" x ")
}

/// The first `n` bytes of a file's content (decompressed when it is gzip), and whether it was
/// compressed.
fn peek(path: &Path, n: usize) -> Result<(Vec<u8>, bool)> {
    let (mut file, _) = crate::files::open_regular(path).map_err(|e| DataError::io(path, e))?;
    let mut raw = Vec::new();
    (&mut file)
        .take(2)
        .read_to_end(&mut raw)
        .map_err(|e| DataError::io(path, e))?;
    let gz = raw == [0x1f, 0x8b];
    let chained = std::io::Cursor::new(raw).chain(file);
    let mut out = Vec::with_capacity(n);
    let res = if gz {
        GzDecoder::new(chained).take(n as u64).read_to_end(&mut out)
    } else {
        chained.take(n as u64).read_to_end(&mut out)
    };
    if let Err(e) = res {
        // A corrupt stream: report what could be read (the readers will name the problem).
        if out.is_empty() {
            return Err(DataError::format(path, format!("corrupt gzip data: {e}")));
        }
    }
    Ok((out, gz))
}

/// Describes a dataset file; the format is detected from the content (and `.csv` names).
pub fn describe(path: &Path) -> Result<Description> {
    let (head, gz) = peek(path, 544)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if head.starts_with(b"MATLAB") {
        return describe_mat(path);
    }
    if nifti_version(&head).is_some() {
        return describe_nifti(path, &head, gz);
    }
    if head.len() >= 4 && head[0] == 0 && head[1] == 0 && idx_type(head[2]).is_some() {
        return describe_idx(path, &head, gz);
    }
    if name.ends_with(".csv") {
        return describe_manifest(path);
    }
    if name.ends_with(".nii") || name.ends_with(".nii.gz") || name.ends_with(".hdr") {
        return Err(DataError::format(
            path,
            "not a valid NIfTI file: sizeof_hdr is neither 348 nor 540 (truncated or corrupt?)",
        ));
    }
    let detail = if head.is_empty() {
        "the file is empty".to_string()
    } else {
        let shown: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!(
            "{}first bytes {}",
            if gz { "gzip-compressed; " } else { "" },
            shown.join(" ")
        )
    };
    Err(DataError::UnknownFormat {
        path: path.to_path_buf(),
        detail,
    })
}

fn idx_type(code: u8) -> Option<(&'static str, usize)> {
    Some(match code {
        0x08 => ("u8", 1),
        0x09 => ("i8", 1),
        0x0b => ("i16", 2),
        0x0c => ("i32", 4),
        0x0d => ("f32", 4),
        0x0e => ("f64", 8),
        _ => return None,
    })
}

fn describe_idx(path: &Path, head: &[u8], gz: bool) -> Result<Description> {
    let (ty, _) = idx_type(head[2]).expect("checked by the caller");
    let mut d = Description::new(path, "IDX");
    d.add("compressed", json!(gz), if gz { "gzip" } else { "no" });
    d.add("element_type", json!(ty), ty);
    if ty != "u8" {
        let ndims = head[3] as usize;
        let dims: Vec<usize> = (0..ndims)
            .filter_map(|i| head.get(4 + 4 * i..8 + 4 * i))
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .collect();
        d.add("dims", json!(dims), dims_text(&dims));
        d.add(
            "note",
            json!("only unsigned-byte IDX files (MNIST, Fashion-MNIST) are read by mmssl"),
            "only unsigned-byte IDX files (MNIST, Fashion-MNIST) are read by mmssl; data not checked",
        );
        return Ok(d);
    }
    let arr = crate::read_idx(path)?;
    d.add("dims", json!(arr.dims), dims_text(&arr.dims));
    d.add("count", json!(arr.dims[0]), arr.dims[0].to_string());
    if arr.dims.len() == 3 {
        d.add(
            "kind",
            json!("images"),
            format!("{} images of {}x{}", arr.dims[0], arr.dims[1], arr.dims[2]),
        );
    } else if arr.dims.len() == 1 {
        let mut counts: BTreeMap<u8, usize> = BTreeMap::new();
        for &v in &arr.data {
            *counts.entry(v).or_default() += 1;
        }
        d.add("kind", json!("labels"), format!("{} labels", arr.dims[0]));
        let text = counts
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let obj: serde_json::Map<String, Value> = counts
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        d.add("classes", json!(counts.len()), counts.len().to_string());
        d.add("class_counts", Value::Object(obj), text);
    }
    Ok(d)
}

fn describe_mat(path: &Path) -> Result<Description> {
    let arrays = crate::read_mat(path)?;
    let mut d = Description::new(path, "MATLAB .mat (v5)");
    let mut list = Vec::new();
    let mut lines = Vec::new();
    for a in &arrays {
        let class = match a.data {
            MatData::U8(_) => "uint8",
            MatData::F64(_) => "numeric (read as double)",
        };
        list.push(json!({"name": a.name, "class": class, "dims": a.dims}));
        lines.push(format!("{} {} [{}]", a.name, class, dims_text(&a.dims)));
    }
    d.add("arrays", Value::Array(list), lines.join("; "));
    let x = arrays.iter().find(|a| a.name == "X");
    let y = arrays.iter().find(|a| a.name == "y");
    if let (Some(x), Some(y)) = (x, y) {
        let n_labels: usize = y.dims.iter().product();
        if x.dims.len() == 4 && x.dims[2] == 3 && x.dims[3] == n_labels {
            let images = x.dims[3];
            d.add(
                "svhn",
                json!({"images": images, "labels": n_labels, "height": x.dims[0], "width": x.dims[1]}),
                format!(
                    "looks like SVHN: {images} images of {}x{}x3, {n_labels} labels (10 = digit 0)",
                    x.dims[0], x.dims[1]
                ),
            );
            let labels: Vec<f64> = match &y.data {
                MatData::U8(v) => v.iter().map(|&b| b as f64).collect(),
                MatData::F64(v) => v.clone(),
            };
            let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
            for v in labels {
                *counts.entry(v as i64).or_default() += 1;
            }
            let obj: serde_json::Map<String, Value> = counts
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            let text = counts
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ");
            d.add("label_counts", Value::Object(obj), text);
        }
    }
    if d.get("svhn").is_none() {
        d.add(
            "svhn",
            Value::Null,
            "no (SVHN files hold `X` [32, 32, 3, N] and `y` [N, 1])",
        );
    }
    Ok(d)
}

fn nifti_version(head: &[u8]) -> Option<u8> {
    let b: [u8; 4] = head.get(..4)?.try_into().ok()?;
    match (i32::from_le_bytes(b), i32::from_be_bytes(b)) {
        (348, _) | (_, 348) => Some(1),
        (540, _) | (_, 540) => Some(2),
        _ => None,
    }
}

fn xform_name(code: i32) -> &'static str {
    match code {
        1 => "scanner",
        2 => "aligned",
        3 => "Talairach",
        4 => "MNI 152",
        5 => "template",
        _ => "unknown",
    }
}

fn describe_nifti(path: &Path, head: &[u8], gz: bool) -> Result<Description> {
    let info = crate::read_nifti_header(path)?;
    // Read the data too, so that a truncated or corrupt file is reported here.
    let volume = if info.separate_data {
        None
    } else {
        Some(crate::read_nifti(path)?)
    };
    let mut d = Description::new(path, &format!("NIfTI-{}", info.version));
    d.add("compressed", json!(gz), if gz { "gzip" } else { "no" });
    d.add(
        "byte_order",
        json!(if info.big_endian { "big" } else { "little" }),
        if info.big_endian {
            "big-endian"
        } else {
            "little-endian"
        },
    );
    let dt = format!("{:?}", info.voxel_type).to_lowercase();
    d.add(
        "datatype",
        json!(dt),
        format!("{dt} (code {})", info.voxel_type.code()),
    );
    d.add("dims", json!(info.dims), dims_text(&info.dims));
    let vs = info.voxel_size;
    d.add(
        "voxel_size_mm",
        json!(vs),
        format!("{:.4} x {:.4} x {:.4} mm", vs[0], vs[1], vs[2]),
    );
    // xyzt_units: byte 123 in NIfTI-1, i32 at byte 500 in NIfTI-2.
    let units = if info.version == 1 {
        head.get(123).map(|&b| b as u32)
    } else {
        head.get(500..504).map(|b| {
            let b = [b[0], b[1], b[2], b[3]];
            if info.big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        })
    }
    .unwrap_or(0);
    let space = match units & 0x07 {
        1 => "m",
        2 => "mm",
        3 => "um",
        _ => "unknown (taken as mm)",
    };
    let time = match units & 0x38 {
        8 => "s",
        16 => "ms",
        24 => "us",
        32 => "Hz",
        40 => "ppm",
        48 => "rad/s",
        _ => "unknown",
    };
    d.add(
        "units",
        json!({"space": space, "time": time}),
        format!("space {space}, time {time}"),
    );
    if info.dims.len() >= 4 && info.dims[3] > 1 {
        d.add(
            "tr_s",
            json!(info.tr),
            info.tr
                .map(|t| format!("{t} s"))
                .unwrap_or_else(|| "not given".into()),
        );
    }
    let scaled = !(info.scl_slope == 1.0 && info.scl_inter == 0.0);
    d.add(
        "scaling",
        json!({"slope": info.scl_slope, "intercept": info.scl_inter}),
        if scaled {
            format!("value * {} + {}", info.scl_slope, info.scl_inter)
        } else {
            "none".into()
        },
    );
    let source = if info.sform_code > 0 {
        format!("sform ({})", xform_name(info.sform_code))
    } else if info.qform_code > 0 {
        format!("qform ({})", xform_name(info.qform_code))
    } else {
        "pixdim (no sform or qform)".into()
    };
    d.add(
        "affine_source",
        json!({"source": source, "sform_code": info.sform_code, "qform_code": info.qform_code}),
        source.clone(),
    );
    let a = &info.affine.rows;
    d.add(
        "affine",
        json!(a),
        a.iter()
            .take(3)
            .map(|r| format!("[{:.3} {:.3} {:.3} {:.3}]", r[0], r[1], r[2], r[3]))
            .collect::<Vec<_>>()
            .join(" "),
    );
    if info.separate_data {
        d.add(
            "data",
            json!("separate .img file"),
            "in a separate .img file (not read)",
        );
    }
    if let Some(v) = volume {
        let (lo, hi) = v
            .data()
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            });
        d.add(
            "value_range",
            json!([lo, hi]),
            format!("{lo} to {hi} (after scaling)"),
        );
    }
    Ok(d)
}

fn describe_manifest(path: &Path) -> Result<Description> {
    let bytes = crate::files::read_bytes(path).map_err(|e| DataError::io(path, e))?;
    let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let m = Manifest::parse(path, &bytes, &base, false)?;
    let mut d = Description::new(path, "cohort manifest (CSV)");
    d.add("rows", json!(m.rows().len()), m.rows().len().to_string());
    let subjects = m.subjects();
    d.add(
        "subjects",
        json!(subjects.len()),
        subjects.len().to_string(),
    );
    let label = |g: Diagnosis| match g {
        Diagnosis::Unlabelled => "unlabelled",
        other => other.as_str(),
    };
    let mut sessions: BTreeMap<&str, usize> = BTreeMap::new();
    for r in m.rows() {
        *sessions.entry(label(r.diagnosis)).or_default() += 1;
    }
    let mut subj: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &subjects {
        *subj.entry(label(s.diagnosis)).or_default() += 1;
    }
    let text = |m: &BTreeMap<&str, usize>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    d.add("sessions_per_diagnosis", json!(sessions), text(&sessions));
    d.add("subjects_per_diagnosis", json!(subj), text(&subj));
    let cov = m.covariate_names();
    d.add(
        "covariates",
        json!(cov),
        if cov.is_empty() {
            "none".to_string()
        } else {
            cov.join(", ")
        },
    );
    let missing = m
        .rows()
        .iter()
        .flat_map(|r| [&r.t1, &r.falff])
        .filter(|p| !p.exists())
        .count();
    d.add(
        "missing_files",
        json!(missing),
        if missing == 0 {
            "none (every T1 and fALFF file exists)".to_string()
        } else {
            format!("{missing} referenced volumes do not exist")
        },
    );
    Ok(d)
}
