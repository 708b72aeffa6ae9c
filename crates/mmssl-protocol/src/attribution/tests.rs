use super::compute::{Head, batches, distinct};
use super::maps::Space;
use super::*;
use burn::tensor::{Tensor, TensorData};
use mmssl_data::{Affine, PairedDataset, PairedItem, Subset, VoxelGrid};
use std::sync::Arc;

fn device() -> Device {
    Device::default()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

#[test]
fn heads_compute_their_targets_by_hand() {
    let d = device();
    // z = [[1, 2], [3, -1]].
    let z = || Tensor::<2>::from_data(TensorData::new(vec![1f32, 2.0, 3.0, -1.0], [2, 2]), &d);
    let linear = Head::Linear {
        mean: Tensor::from_data(TensorData::new(vec![1f32, 1.0], [1, 2]), &d),
        direction: Tensor::from_data(TensorData::new(vec![0.5f32, -2.0], [2, 1]), &d),
    };
    // (z - [1, 1]) . [0.5, -2] = [0 - 2, 1 + 4].
    assert_eq!(
        values(linear.apply(z(), &[None, None], 2).unwrap()),
        [-2.0, 5.0]
    );
    assert_eq!(
        values(Head::Unit(1).apply(z(), &[None, None], 2).unwrap()),
        [2.0, -1.0]
    );
}

#[test]
fn the_decision_is_the_evidence_for_the_second_class_or_the_own_class() {
    use burn::module::Module;
    use rand::SeedableRng;
    let d = device();
    let probe = mmssl_train::LinearProbeConfig::new(2, 3)
        .init(&d, &mut rand::rngs::StdRng::seed_from_u64(1));
    let z = Tensor::<2>::from_data(TensorData::new(vec![1f32, 2.0, 3.0, -1.0], [2, 2]), &d);
    let logits = values(probe.logits(z.clone()));
    // Three classes: own logit minus the mean logit.
    let head = Head::Decision(probe.clone().freeze());
    let got = values(head.apply(z.clone(), &[Some(2), Some(0)], 3).unwrap());
    let mean = |r: usize| (logits[3 * r] + logits[3 * r + 1] + logits[3 * r + 2]) / 3.0;
    assert!(
        (got[0] - (logits[2] - mean(0))).abs() < 1e-5,
        "{got:?} {logits:?}"
    );
    assert!((got[1] - (logits[3] - mean(1))).abs() < 1e-5);
    // An item without a label has no own class.
    assert!(head.apply(z.clone(), &[Some(1), None], 3).is_err());
    // Two classes: logit 1 - logit 0, whatever the labels.
    let two = mmssl_train::LinearProbeConfig::new(2, 2)
        .init(&d, &mut rand::rngs::StdRng::seed_from_u64(2));
    let l = values(two.logits(z.clone()));
    let got = values(Head::Decision(two).apply(z, &[None, None], 2).unwrap());
    assert!((got[0] - (l[1] - l[0])).abs() < 1e-5 && (got[1] - (l[3] - l[2])).abs() < 1e-5);
}

/// Items named `names` (a repeated name is one session repeated).
struct Named(Vec<&'static str>);
impl PairedDataset for Named {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn modalities(&self) -> usize {
        2
    }
    fn shape(&self, _: usize) -> Vec<usize> {
        vec![1, 2, 2]
    }
    fn classes(&self) -> usize {
        2
    }
    fn label(&self, i: usize) -> Option<usize> {
        Some(i % 2)
    }
    fn get(&self, i: usize, _: u64) -> mmssl_data::Result<PairedItem> {
        Ok(PairedItem {
            views: vec![vec![i as f32; 4]; 2],
            label: Some(i % 2),
        })
    }
    fn item_name(&self, i: usize) -> Option<String> {
        self.0.get(i).map(|s| s.to_string())
    }
}

#[test]
fn items_repeated_for_class_balance_or_in_two_sets_count_once() {
    let a = Subset::new(Arc::new(Named(vec!["x", "y", "x", "z"])), vec![0, 1, 2, 3]).unwrap();
    let b = Subset::new(Arc::new(Named(vec!["z", "w"])), vec![0, 1]).unwrap();
    assert_eq!(distinct(&[&a, &b]), vec![(0, 0), (0, 1), (0, 3), (1, 1)]);
    // Batches never mix sets and hold at most `size` items.
    let items = distinct(&[&a, &b]);
    assert_eq!(
        batches(&items, 2),
        vec![(0, vec![0, 1]), (0, vec![3]), (1, vec![1])]
    );
}

#[test]
fn the_common_grid_is_the_shared_one_or_centred_on_the_mean_centre() {
    let grid =
        |x0: f64| VoxelGrid::new([4, 4, 4], Affine::scaling([3.0; 3], [x0, 0.0, 0.0])).unwrap();
    let shapes = vec![vec![1, 4, 4, 4]; 2];
    let Space::Volumes { common } =
        Space::new(&[Some(grid(0.0)), Some(grid(0.0))], &shapes).unwrap()
    else {
        panic!("volumes")
    };
    assert_eq!(common, grid(0.0));
    // Origins 0 and 6 mm: the common grid's origin is 3 mm.
    let Space::Volumes { common } =
        Space::new(&[Some(grid(0.0)), Some(grid(6.0))], &shapes).unwrap()
    else {
        panic!("volumes")
    };
    let o = common.affine.apply([0.0; 3]);
    assert!((o[0] - 3.0).abs() < 1e-9 && o[1].abs() < 1e-9, "{o:?}");
    // Volumes without a grid, or on grids of two shapes, have no common space.
    assert!(Space::new(&[None], &shapes).is_err());
    let other = VoxelGrid::new([5, 4, 4], Affine::identity()).unwrap();
    assert!(Space::new(&[Some(grid(0.0)), Some(other)], &shapes).is_err());
    assert!(Space::new(&[None], &[vec![3, 8]]).is_err());
    // An image's map sums its channels.
    let space = Space::new(&[None], &[vec![2, 1, 2]]).unwrap();
    let map = space
        .item_map(&[1.0, 2.0, 10.0, 20.0], &[2, 1, 2], None, "x")
        .unwrap();
    assert_eq!(map.data(), [11.0, 22.0]);
    assert_eq!(map.shape(), [2, 1, 1]);
}

#[test]
fn settings_out_of_range_are_refused_by_name() {
    assert!(ExplainConfig::default().check().is_ok());
    // Each change of the defaults, and the setting its refusal names.
    type Change = fn(&mut ExplainConfig);
    let cases: [(Change, &str); 6] = [
        (
            |c| c.target = ExplainTarget::Shared { components: 0 },
            "explain.components",
        ),
        (|c| c.batch_size = 0, "explain.batch_size"),
        (|c| c.smoothing_mm = -1.0, "explain.smoothing_mm"),
        (|c| c.limit = Some(0), "explain.limit"),
        (|c| c.cluster_threshold = 0.0, "explain.cluster_threshold"),
        (
            |c| c.attribution = mmssl_train::Attribution::IntegratedGradients { steps: 0 },
            "steps",
        ),
    ];
    for (change, field) in cases {
        let mut config = ExplainConfig::default();
        change(&mut config);
        let e = config.check().unwrap_err().to_string();
        assert!(e.contains(field), "{e}");
    }
    assert_eq!("valid".parse::<ExplainSet>().unwrap(), ExplainSet::Valid);
    assert!("everything".parse::<ExplainSet>().is_err());
    assert_eq!(
        ExplainTarget::Shared { components: 2 }.names(),
        ["shared-1", "shared-2"]
    );
}

#[test]
fn an_output_folder_of_something_else_is_never_removed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("explain");
    prepare_out(&out, false).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    assert!(prepare_out(&out, true).is_err());
    assert!(out.join("notes.txt").exists());
    std::fs::write(out.join("explain.json"), "{}").unwrap();
    assert!(prepare_out(&out, false).is_err());
    prepare_out(&out, true).unwrap();
    assert!(std::fs::read_dir(&out).unwrap().next().is_none());
}

/// A slice figure has, right of its three views, a colour bar per row running from the
/// saturated positive colour (yellow, top) through black (below the threshold) to the
/// saturated negative one (cyan, bottom).
#[test]
fn slice_figures_have_a_colour_bar_per_row() {
    let dir = tempfile::tempdir().unwrap();
    let shape = [20, 24, 16];
    let n: usize = shape.iter().product();
    let affine = Affine::scaling([4.0; 3], [-40.0, -48.0, -32.0]);
    let under = mmssl_data::Volume::new(
        (0..n).map(|i| 1.0 + (i % 7) as f32).collect(),
        shape,
        affine,
        "underlay",
    )
    .unwrap();
    // Values of 5 and -1 with threshold 3 and saturation 6: nothing in the views reaches the
    // saturated colours.
    let map = under
        .with_data(
            (0..n)
                .map(|i| if i % 5 == 0 { 5.0 } else { -1.0 })
                .collect(),
            under.dims(),
        )
        .unwrap();
    let path = dir.path().join("figure.png");
    let panel = |label: &str| super::figures::Panel {
        label: label.into(),
        map: &map,
        threshold: 3.0,
        max: 6.0,
    };
    super::figures::slices(&path, "t", &under, &[panel("a"), panel("b")], [10, 12, 8]).unwrap();
    let decoder = png::Decoder::new(std::fs::File::open(&path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let (w, h) = (info.width as usize, info.height as usize);
    let pixel = |x: usize, y: usize| {
        let i = (y * w + x) * channels;
        [buf[i], buf[i + 1], buf[i + 2]]
    };
    // Where each saturated colour appears, by row of the image, in the columns of the bar
    // (right of the views: 150 px of labels, then 24, 20 and 20 voxels of 3 px, 10 px apart).
    let views_end = 150 + (24 * 3 + 10) + (20 * 3 + 10) + (20 * 3 + 10);
    assert!(w > views_end, "no room for a colour bar: {w} px");
    let rows_with = |rgb: [u8; 3], columns: std::ops::Range<usize>| -> Vec<usize> {
        (0..h)
            .filter(|&y| columns.clone().any(|x| pixel(x, y) == rgb))
            .collect()
    };
    let yellow = rows_with([255, 255, 0], views_end..w);
    let cyan = rows_with([0, 255, 255], views_end..w);
    assert!(
        !yellow.is_empty() && !cyan.is_empty(),
        "{yellow:?} {cyan:?}"
    );
    // One bar per row of the figure (below a 30 px title), yellow above cyan in each.
    let row_h = (h - 30) / 2;
    let row = |y: usize| y.saturating_sub(30) / row_h;
    for r in 0..2 {
        let y = yellow.iter().filter(|&&y| row(y) == r).min().unwrap();
        let c = cyan.iter().filter(|&&y| row(y) == r).max().unwrap();
        assert!(y < c, "row {r}: yellow at {y}, cyan at {c}");
    }
    // The views themselves never reach the saturated colours.
    assert!(rows_with([255, 255, 0], 150..views_end).is_empty());
}
