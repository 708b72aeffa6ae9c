//! The run's pieces: reports, folders, labels.

use super::*;

#[test]
fn the_summary_prints_every_similarity_warning() {
    let a = ndarray::Array2::from_shape_fn((2, 3), |(i, j)| (i * 3 + j) as f64);
    let b = a.mapv(|x| x * x);
    // Two test items: CKA and SVCCA are undefined, and the summary says why.
    let sim = Similarity::new().report(a.view(), b.view()).unwrap();
    let report = RunReport {
        method: "XX".into(),
        dataset: crate::DatasetKind::Oasis3,
        sizes: [10, 4, 2],
        linear_eval: Vec::new(),
        similarity: Some(sim),
        seconds: [1.0, 2.0, 0.0],
        eval_epochs: 500,
    };
    let text = report.summary();
    assert!(text.contains("CKA -") && text.contains("SVCCA -"), "{text}");
    assert!(text.contains("note: cka: undefined with n = 2"), "{text}");
    assert!(text.contains("note: svcca"), "{text}");
}
