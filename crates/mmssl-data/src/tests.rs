//! Tests on the real files of `../shared/data` (skipped with a message when it is absent) and
//! on files written here in the same formats.

use super::*;
use std::io::Write;
use std::path::PathBuf;

/// Asserts that `result` is an error whose message names every one of `needles`.
pub(crate) fn assert_error<T: std::fmt::Debug, E: std::fmt::Display>(
    result: std::result::Result<T, E>,
    needles: &[&str],
) {
    let e = result.unwrap_err().to_string();
    for needle in needles {
        assert!(e.contains(needle), "`{needle}` missing: {e}");
    }
}

pub(crate) fn shared(sub: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(sub);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: {} is absent", p.display());
        None
    }
}

const MNIST_TRAIN: [usize; 10] = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
const MNIST_TEST: [usize; 10] = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];

#[test]
fn mnist_and_fashion_have_the_official_class_counts() {
    let Some(dir) = shared("mnist") else { return };
    let train = load_mnist_dir(&dir, MnistSplit::Train).unwrap();
    assert_eq!(
        (train.len(), train.height(), train.width()),
        (60_000, 28, 28)
    );
    assert_eq!(train.class_counts(), MNIST_TRAIN);
    let test = load_mnist_dir(&dir, MnistSplit::Test).unwrap();
    assert_eq!(test.class_counts(), MNIST_TEST);
    let Some(fdir) = shared("fashion-mnist") else {
        return;
    };
    let f = load_mnist_dir(&fdir, MnistSplit::Test).unwrap();
    assert_eq!(f.class_counts(), vec![1000; 10]);
    assert_eq!(
        load_mnist_dir(&fdir, MnistSplit::Train)
            .unwrap()
            .class_counts(),
        vec![6000; 10]
    );
}

#[test]
fn the_embedded_test_split_is_real_mnist() {
    let e = embedded_mnist_test().unwrap();
    assert_eq!((e.len(), e.height(), e.width()), (10_000, 28, 28));
    assert_eq!(e.class_counts(), MNIST_TEST);
    if let Some(dir) = shared("mnist") {
        assert_eq!(
            e.image(1234),
            load_mnist_dir(&dir, MnistSplit::Test).unwrap().image(1234)
        );
    }
}

fn gunzip(path: &std::path::Path) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn raw_and_gzip_idx_read_the_same() {
    let Some(dir) = shared("mnist") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let gz = dir.join("t10k-labels-idx1-ubyte.gz");
    let raw = tmp.path().join("t10k-labels-idx1-ubyte");
    std::fs::write(&raw, gunzip(&gz)).unwrap();
    let a = read_idx(&gz).unwrap();
    assert_eq!(a, read_idx(&raw).unwrap());
    assert_eq!(a.dims, vec![10_000]);
    // First test labels of MNIST: 7, 2, 1, 0, 4.
    assert_eq!(&a.data[..5], &[7, 2, 1, 0, 4]);
}

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

pub(crate) fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

#[test]
fn bad_idx_files_are_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let msg = |p: PathBuf| read_idx(&p).unwrap_err().to_string();
    let e = msg(write(d, "magic.idx", &[1, 2, 8, 1, 0, 0, 0, 1, 5]));
    assert!(e.contains("magic.idx") && e.contains("magic"), "{e}");
    let e = msg(write(
        d,
        "type.idx",
        &[0, 0, 0x0d, 1, 0, 0, 0, 1, 5, 5, 5, 5],
    ));
    assert!(e.contains("element type 0x0d"), "{e}");
    let e = msg(write(d, "short.idx", &idx_bytes(&[2, 3, 3], &[1; 10])));
    assert!(e.contains("short.idx") && e.contains("truncated"), "{e}");
    let e = msg(write(d, "long.idx", &idx_bytes(&[2], &[1, 2, 3])));
    assert!(e.contains("trailing"), "{e}");
    let e = msg(write(d, "tiny.idx", &[0, 0]));
    assert!(e.contains("too short"), "{e}");
    let e = msg(write(d, "hdr.idx", &[0, 0, 8, 3, 0, 0, 0, 1]));
    assert!(e.contains("truncated header"), "{e}");
    // A huge declared size in a small file is refused before allocating it.
    let e = msg(write(
        d,
        "huge.idx",
        &idx_bytes(&[60_000, 60_000, 60_000], &[0; 16]),
    ));
    assert!(e.contains("truncated"), "{e}");
    // Compressed and truncated.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&idx_bytes(&[100], &[3; 40])).unwrap();
    let e = msg(write(d, "short.idx.gz", &gz.finish().unwrap()));
    assert!(e.contains("short.idx.gz") && e.contains("truncated"), "{e}");
    let e = msg(d.join("absent.idx"));
    assert!(e.contains("absent.idx"), "{e}");
    // Images and labels that disagree in count.
    let im = write(d, "im.idx", &idx_bytes(&[3, 2, 2], &[0; 12]));
    let lb = write(d, "lb.idx", &idx_bytes(&[2], &[0, 1]));
    assert_error(read_idx_images(&im, &lb), &["3 images", "2 labels"]);
    assert_error(read_idx_images(&lb, &lb), &["expected 3 dimensions"]);
    assert_error(
        load_mnist_dir(d, MnistSplit::Train),
        &["official IDX files", "train-images-idx3-ubyte.gz"],
    );
}

#[test]
fn svhn_layout_files_load_compressed_and_raw_alike() {
    let Some(dir) = shared("svhn-format") else {
        return;
    };
    let c = load_svhn_mat(dir.join("svhn_layout_compressed.mat")).unwrap();
    let r = load_svhn_mat(dir.join("svhn_layout_raw.mat")).unwrap();
    assert_eq!(
        (c.len(), c.channels(), c.height(), c.width()),
        (64, 3, 32, 32)
    );
    assert_eq!(c.labels(), r.labels());
    for i in 0..64 {
        assert_eq!(c.image(i), r.image(i));
    }
    assert!(c.labels().iter().all(|&l| l < 10));
    assert!(c.labels().contains(&0), "label 10 must map to digit 0");
    // Real digits: dark background, some bright strokes.
    let img = c.image(0);
    assert!(img.iter().filter(|&&p| p > 128).count() > 30);
    assert!(img.iter().filter(|&&p| p == 0).count() > 300);
}

#[test]
fn bad_mat_files_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut v73 = b"MATLAB 7.3 MAT-file, Platform: GLNXA64".to_vec();
    v73.resize(600, b' ');
    assert_error(
        read_mat(write(d, "v73.mat", &v73)),
        &["v7.3", "HDF5", "v73.mat"],
    );
    assert_error(
        read_mat(write(d, "junk.mat", b"hello world")),
        &["not a MATLAB v5"],
    );
    if let Some(dir) = shared("svhn-format") {
        let full = std::fs::read(dir.join("svhn_layout_raw.mat")).unwrap();
        assert_error(
            read_mat(write(d, "cut.mat", &full[..full.len() / 2])),
            &["cut.mat", "beyond the end"],
        );
        let fullc = std::fs::read(dir.join("svhn_layout_compressed.mat")).unwrap();
        assert_error(
            read_mat(write(d, "cutc.mat", &fullc[..fullc.len() - 100])),
            &["cutc.mat"],
        );
    }
}

pub(crate) fn toy_images(n: usize) -> ImageSet {
    let pixels: Vec<u8> = (0..n * 28 * 28).map(|i| ((i * 7) % 256) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
    ImageSet::new(pixels, labels, 1, 28, 28, "toy").unwrap()
}

#[test]
fn two_view_items_have_the_documented_form() {
    let data = TwoViewMnist::new(toy_images(9), TwoViewConfig::default()).unwrap();
    assert_eq!(data.len(), 9);
    assert_eq!(data.shape(0), vec![1, 32, 32]);
    for i in 0..9 {
        let item = data.get(i, 3).unwrap();
        assert_eq!(item.label, Some(i % 3));
        for v in &item.views {
            assert_eq!(v.len(), 1024);
            assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
        }
        assert_eq!(item, data.get(i, 3).unwrap());
        assert_ne!(item.views, data.get(i, 4).unwrap().views);
    }
    let other_seed = TwoViewMnist::new(
        toy_images(9),
        TwoViewConfig {
            seed: 1,
            ..Default::default()
        },
    )
    .unwrap();
    assert_ne!(other_seed.get(0, 0).unwrap(), data.get(0, 0).unwrap());
    assert!(matches!(
        data.get(9, 0),
        Err(DataError::OutOfRange { index: 9, len: 9 })
    ));
}

#[test]
fn two_view_without_rotation_or_noise_source_is_the_resized_image() {
    let images = toy_images(2);
    let base = Image::from_u8(images.image(1), 1, 28, 28)
        .min_max()
        .resize(32, 32);
    let data = TwoViewMnist::new(
        images,
        TwoViewConfig {
            max_rotation: 0.0,
            noise_range: NoiseRange::Rescale,
            ..Default::default()
        },
    )
    .unwrap();
    let item = data.get(1, 0).unwrap();
    assert_eq!(item.views[0], base.data);
    // Rescaled noisy view spans [0, 1] exactly.
    let (lo, hi) = item.views[1]
        .iter()
        .fold((1f32, 0f32), |(a, b), &x| (a.min(x), b.max(x)));
    assert!(lo == 0.0 && hi == 1.0);
}

#[test]
fn same_class_variant_takes_another_image_of_the_class() {
    let Some(dir) = shared("mnist") else { return };
    let test = load_mnist_dir(&dir, MnistSplit::Test)
        .unwrap()
        .truncate(500);
    let base = TwoViewMnist::new(
        test.clone(),
        TwoViewConfig {
            max_rotation: 0.0,
            ..Default::default()
        },
    )
    .unwrap();
    let variant = TwoViewMnist::new(
        test.clone(),
        TwoViewConfig {
            max_rotation: 0.0,
            second_view: SecondView::SameClass,
            noise_range: NoiseRange::Clamp,
            ..Default::default()
        },
    )
    .unwrap();
    // View 2 without noise is unobservable, so compare the noiseless view 1 of the chosen
    // image: under the variant, view 2 is not a noisy copy of view 1 (correlation is lower).
    let corr = |a: &[f32], b: &[f32]| {
        let n = a.len() as f32;
        let (ma, mb) = (a.iter().sum::<f32>() / n, b.iter().sum::<f32>() / n);
        let cov: f32 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f32 = a.iter().map(|x| (x - ma).powi(2)).sum();
        let vb: f32 = b.iter().map(|y| (y - mb).powi(2)).sum();
        cov / (va * vb).sqrt()
    };
    let (mut same, mut other) = (0.0, 0.0);
    for i in 0..100 {
        let a = base.get(i, 0).unwrap();
        let b = variant.get(i, 0).unwrap();
        same += corr(&a.views[0], &a.views[1]);
        other += corr(&b.views[0], &b.views[1]);
        assert_eq!(b.label, a.label);
    }
    assert!(
        same > other + 5.0,
        "same-image {same} vs same-class {other}"
    );
}

#[test]
fn image_transforms_are_geometrically_right() {
    // A single bright pixel right of the centre of a 5x5 image moves above it under +90 deg.
    let mut px = vec![0u8; 25];
    px[2 * 5 + 3] = 255;
    let img = Image::from_u8(&px, 1, 5, 5);
    let r = img.rotate(90.0);
    assert!((r.data[5 + 2] - 1.0).abs() < 1e-5, "{:?}", r.data);
    assert!((r.rotate(-90.0).data[2 * 5 + 3] - 1.0).abs() < 1e-5);
    // Resizing a constant image keeps it constant; a linear ramp stays monotone.
    let flat = Image::from_u8(&[100u8; 28 * 28], 1, 28, 28).resize(32, 32);
    assert!(flat.data.iter().all(|&x| (x - 100.0 / 255.0).abs() < 1e-6));
    let ramp: Vec<u8> = (0..28 * 28).map(|i| ((i % 28) * 9) as u8).collect();
    let up = Image::from_u8(&ramp, 1, 28, 28).resize(32, 32);
    assert!(up.data[..32].windows(2).all(|w| w[1] >= w[0]));
    let mm = Image::from_u8(&[10, 20, 30, 40], 1, 2, 2).min_max();
    for (x, y) in mm.data.iter().zip([0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0]) {
        assert!((x - y).abs() < 1e-6, "{:?}", mm.data);
    }
}

#[test]
fn mnist_fashion_label_pairing_has_the_documented_size() {
    let (Some(m), Some(f)) = (shared("mnist"), shared("fashion-mnist")) else {
        return;
    };
    let a = load_mnist_dir(&m, MnistSplit::Test).unwrap();
    let b = load_mnist_dir(&f, MnistSplit::Test).unwrap();
    let expected: usize = MNIST_TEST.iter().map(|&c| c.min(1000)).sum::<usize>() * 30;
    let paired = LabelPaired::new(a.clone(), b.clone(), LabelPairedConfig::default()).unwrap();
    assert_eq!(paired.len(), expected);
    assert_eq!(expected, 293_580);
    for i in (0..paired.len()).step_by(997) {
        let (ia, ib) = paired.pair(i).unwrap();
        let l = paired.label(i).unwrap();
        assert_eq!(a.labels()[ia] as usize, l);
        assert_eq!(b.labels()[ib] as usize, l);
    }
    let item = paired.get(5, 0).unwrap();
    assert_eq!(item.views[0].len(), 1024);
    assert_eq!(item.views[1].len(), 1024);
    // Capped per class, fewer repeats.
    let small = LabelPaired::new(
        a,
        b,
        LabelPairedConfig {
            max_per_class: 50,
            repeats: 2,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(small.len(), 50 * 10 * 2);
}

#[test]
fn stratified_folds_partition_and_balance() {
    let labels: Vec<usize> = (0..1000).map(|i| if i % 10 == 0 { 1 } else { 0 }).collect();
    let mut seen = vec![0; 1000];
    for fold in 0..5 {
        let (train, val) = stratified_k_fold(&labels, 5, fold, 42).unwrap();
        assert_eq!(train.len() + val.len(), 1000);
        assert_eq!(val.len(), 200);
        assert_eq!(val.iter().filter(|&&i| labels[i] == 1).count(), 20);
        for &i in &val {
            seen[i] += 1;
        }
        assert!(train.iter().all(|i| val.binary_search(i).is_err()));
    }
    assert!(
        seen.iter().all(|&s| s == 1),
        "every item is in exactly one validation fold"
    );
    assert_ne!(
        stratified_k_fold(&labels, 5, 0, 1).unwrap().1,
        stratified_k_fold(&labels, 5, 0, 2).unwrap().1
    );
    assert!(stratified_k_fold(&labels, 1, 0, 0).is_err());
    assert!(stratified_k_fold(&labels, 5, 5, 0).is_err());
    assert!(stratified_k_fold(&[0, 1], 3, 2, 0).is_err());
}

#[cfg(feature = "burn")]
#[test]
fn batches_have_per_modality_tensors_and_labels() {
    use burn::tensor::Device;
    let device = Device::flex();
    let data =
        std::sync::Arc::new(TwoViewMnist::new(toy_images(6), TwoViewConfig::default()).unwrap());
    let sub = Subset::new(data.clone(), vec![5, 1, 3]).unwrap();
    let batch = load_batch(&sub, &[0, 1, 2], 0, &device).unwrap();
    assert_eq!(batch.views.len(), 2);
    match &batch.views[0] {
        ViewBatch::Images(t) => assert_eq!(t.dims(), [3, 1, 32, 32]),
        other => panic!("expected images, got {other:?}"),
    }
    assert_eq!(batch.labels, vec![Some(2), Some(1), Some(0)]);
    let labels = batch.label_tensor(&device).unwrap();
    assert_eq!(
        labels.into_data().try_to_vec_as::<i64>().unwrap(),
        vec![2, 1, 0]
    );
    assert!(Subset::new(data, vec![6]).is_err());
    let shapes = vec![vec![1, 32, 32]];
    let bad = PairedItem {
        views: vec![vec![0.0; 10]],
        label: None,
    };
    assert!(collate(&[bad], &shapes, &device).is_err());
    assert!(collate(&[], &shapes, &device).is_err());
}
