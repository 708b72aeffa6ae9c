//! Reading state dicts (the fixtures, and files broken in each way a user's can be), the name
//! table, and the fixed inputs.

use super::authors::{self, Layout, Part};
use super::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/authors")
        .join(name)
}

/// A safetensors file written by hand: `(name, dtype, shape, bytes)`, offsets as given (for
/// broken files) or consecutive.
fn safetensors_bytes(
    tensors: &[(&str, &str, Vec<usize>, Vec<u8>)],
    offsets: Option<Vec<[usize; 2]>>,
) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (i, (name, dtype, shape, bytes)) in tensors.iter().enumerate() {
        let range = match &offsets {
            Some(o) => o[i],
            None => [data.len(), data.len() + bytes.len()],
        };
        data.extend_from_slice(bytes);
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": range}),
        );
    }
    let mut text = serde_json::Value::Object(header).to_string();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend(data);
    out
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn the_fixed_inputs_are_the_scripts() {
    // numpy: hash_inputs((1048576,)) in make_fixtures.py.
    let x = hash_inputs(1 << 20);
    let bits: Vec<u32> = x[..4].iter().map(|v| v.to_bits()).collect();
    assert_eq!(bits, [1043777988, 1059429236, 1063227850, 990300672]);
    assert_eq!(x[(1 << 20) - 1], 0.158_004_7);
    assert!(x.iter().all(|v| (0.0..1.0).contains(v)));
}

#[test]
fn the_table_names_every_tensor_of_the_authors_model_once() {
    for (file, s_count) in [("dim2d.pt", 2), ("dim3d_catalyst.pth", 2)] {
        let dict = StateDict::read(&fixture(file)).unwrap();
        assert_eq!(authors::sources(&dict), (0..s_count).collect::<Vec<_>>());
        let mut named = Vec::new();
        for s in 0..s_count {
            let arch = authors::detect(&dict, s, true).unwrap();
            for part in [Part::Encoder, Part::ConvHead, Part::LatentHead] {
                for pair in arch.table(part, &authors::dim_prefix(part, s, &arch), "") {
                    let t = &dict.tensors[&pair.authors];
                    if pair.layout != Layout::Counter {
                        assert_eq!(t.shape, pair.shape, "{}", pair.authors);
                    }
                    named.push(pair.authors);
                }
            }
        }
        named.sort();
        let all: Vec<String> = dict.tensors.keys().cloned().collect();
        assert_eq!(
            named, all,
            "{file}: the table and the file name the same tensors"
        );
    }
    let dict = StateDict::read(&fixture("dim2d.pt")).unwrap();
    let arch = authors::detect(&dict, 1, true).unwrap();
    assert_eq!(
        (
            arch.dims,
            arch.in_channels,
            arch.width,
            arch.latent_dim,
            arch.embedding_dim
        ),
        (2, 1, 32, 64, 64)
    );
    // The paper's 2D model: 633,344 parameters (counters are buffers).
    let params: usize = dict
        .tensors
        .iter()
        .filter(|(k, _)| !k.contains("running_") && !k.ends_with("num_batches_tracked"))
        .map(|(_, t)| t.values.len())
        .sum();
    assert_eq!(params, 633_344);
    let dict = StateDict::read(&fixture("dim3d_catalyst.pth")).unwrap();
    let arch = authors::detect(&dict, 0, true).unwrap();
    assert_eq!(
        (arch.dims, arch.width, arch.tap_key()),
        (3, 4, "8_2".into())
    );
    assert_eq!(
        authors::counters(&dict)
            .values()
            .copied()
            .collect::<Vec<_>>(),
        vec![17; 12]
    );
}

#[test]
fn layouts_go_to_mmssl_and_back_exactly() {
    // A 1x1 convolution [O=2, C=3, 1, 1] is mmssl's [C, O]: w[o][c] = mmssl[c][o].
    let w: Vec<f32> = (0..6).map(|v| v as f32).collect();
    let (m, shape) = authors::to_mmssl(&w, &[2, 3, 1, 1], Layout::Pointwise);
    assert_eq!(shape, vec![3, 2]);
    assert_eq!(m, vec![0., 3., 1., 4., 2., 5.]);
    assert_eq!(authors::to_authors(&m, &[2, 3, 1, 1], Layout::Pointwise), w);
    let (m, _) = authors::to_mmssl(&w, &[2, 3], Layout::Linear);
    assert_eq!(authors::to_authors(&m, &[2, 3], Layout::Linear), w);
    assert_eq!(authors::to_mmssl(&w, &[6], Layout::Same).0, w);
}

#[test]
fn a_truncated_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for (name, keep) in [("cut.pt", 100_000), ("cut2.pt", 2_400_000), ("tiny.pt", 10)] {
        let bytes = std::fs::read(fixture("dim2d.pt")).unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes[..keep]).unwrap();
        let e = StateDict::read(&path).unwrap_err().to_string();
        assert!(e.contains(name) && e.contains("truncated"), "{e}");
    }
    let bytes = safetensors_bytes(&[("a", "F32", vec![4], f32_bytes(&[1., 2., 3., 4.]))], None);
    let path = dir.path().join("cut.safetensors");
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let e = StateDict::read(&path).unwrap_err().to_string();
    assert!(
        e.contains("cut.safetensors") && e.contains("not a valid safetensors"),
        "{e}"
    );
}

#[test]
fn a_pickle_naming_foreign_code_is_refused_and_never_run() {
    // pickle.dumps({'weight': R()}, protocol=2) where R reduces to os.system('echo pwned').
    let evil = b"\x80\x02}q\x00X\x06\x00\x00\x00weightq\x01cposix\nsystem\nq\x02X\n\x00\x00\x00echo pwnedq\x03\x85q\x04Rq\x05s.";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evil.pt");
    std::fs::write(&path, evil).unwrap();
    let e = StateDict::read(&path).unwrap_err().to_string();
    assert!(
        e.contains("refused") && e.contains("posix.system") && e.contains("`weight`"),
        "{e}"
    );
    assert!(e.contains("evil.pt"), "{e}");
}

#[test]
fn safetensors_overlapping_tensors_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = [
        ("a", "F32", vec![2], f32_bytes(&[1., 2.])),
        ("b", "F32", vec![2], f32_bytes(&[3., 4.])),
    ];
    let path = dir.path().join("overlap.safetensors");
    std::fs::write(
        &path,
        safetensors_bytes(&tensors, Some(vec![[0, 8], [4, 12]])),
    )
    .unwrap();
    let e = StateDict::read(&path).unwrap_err().to_string();
    assert!(
        e.contains("overlap.safetensors") && e.contains("not a valid safetensors"),
        "{e}"
    );
    // The same tensors in place read back.
    let path = dir.path().join("ok.safetensors");
    std::fs::write(&path, safetensors_bytes(&tensors, None)).unwrap();
    let d = StateDict::read(&path).unwrap();
    assert_eq!(d.tensors["b"].values, vec![3., 4.]);
}

#[test]
fn half_and_double_precision_are_converted_with_a_note_and_integers_refused() {
    let dir = tempfile::tempdir().unwrap();
    let doubles: Vec<u8> = [0.1f64, -2.5]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let halves: Vec<u8> = [0x3c00u16, 0xc000]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let bf16: Vec<u8> = [0x3f80u16, 0x4040]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let path = dir.path().join("mixed.safetensors");
    let file = safetensors_bytes(
        &[
            ("d", "F64", vec![2], doubles),
            ("h", "F16", vec![2], halves),
            ("b", "BF16", vec![2], bf16),
            ("n", "I64", vec![], 7i64.to_le_bytes().to_vec()),
        ],
        None,
    );
    std::fs::write(&path, file).unwrap();
    let d = StateDict::read(&path).unwrap();
    assert_eq!(d.tensors["d"].values, vec![0.1f64 as f32, -2.5]);
    assert_eq!(d.tensors["h"].values, vec![1.0, -2.0]);
    assert_eq!(d.tensors["b"].values, vec![1.0, 3.0]);
    assert_eq!(d.tensors["n"].values, vec![7.0]);
    let converted: BTreeMap<&str, usize> =
        d.converted().iter().map(|(t, n)| (t.name(), *n)).collect();
    assert_eq!(
        converted,
        BTreeMap::from([("bfloat16", 1), ("float16", 1), ("float64", 1)])
    );
    let path = dir.path().join("ints.safetensors");
    std::fs::write(
        &path,
        safetensors_bytes(&[("i", "I32", vec![1], vec![0; 4])], None),
    )
    .unwrap();
    let e = StateDict::read(&path).unwrap_err().to_string();
    assert!(e.contains("`i`") && e.contains("I32"), "{e}");
}

#[test]
fn a_checkpoint_is_read_under_its_key_and_other_entries_are_not_tensors() {
    let d = StateDict::read(&fixture("dim3d_catalyst.pth")).unwrap();
    assert_eq!(d.key.as_deref(), Some("model_state_dict"));
    assert!(d.tensors.keys().all(|k| k.starts_with('_')));
    let d = StateDict::read(&fixture("dim2d.pt")).unwrap();
    assert_eq!((d.key.as_deref(), d.format), (None, "pytorch"));
    let missing = StateDict::read(Path::new("/nonexistent/model.pt")).unwrap_err();
    assert!(missing.to_string().contains("no such file"), "{missing}");
}
