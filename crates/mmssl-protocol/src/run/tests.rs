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
        similarity_error: None,
        retrieval: Vec::new(),
        maps: Vec::new(),
        notes: Vec::new(),
        seconds: [1.0, 2.0, 0.0],
        eval_epochs: 500,
    };
    let text = report.summary();
    assert!(text.contains("CKA -") && text.contains("SVCCA -"), "{text}");
    assert!(text.contains("note: cka: undefined with n = 2"), "{text}");
    assert!(text.contains("note: svcca"), "{text}");
}

#[test]
fn collapsed_representations_leave_the_similarity_out_with_the_reason() {
    // One modality's test representations are all the same (a collapsed encoder).
    let a = ndarray::Array2::from_elem((6, 4), 0.5);
    let b = ndarray::Array2::from_shape_fn((6, 4), |(i, j)| ((i * 7 + j * 3) % 5) as f64);
    let e = analyse(&Similarity::new(), &a, &b).unwrap_err();
    assert!(e.contains("zero variance"), "{e}");
    assert!(analyse(&Similarity::new(), &b, &b.mapv(|x| x * 2.0 + 1.0)).is_ok());
    let report = RunReport {
        method: "XX".into(),
        dataset: crate::DatasetKind::Oasis3,
        sizes: [10, 4, 6],
        linear_eval: Vec::new(),
        similarity: None,
        similarity_error: Some(e),
        retrieval: Vec::new(),
        maps: Vec::new(),
        notes: Vec::new(),
        seconds: [1.0, 2.0, 0.0],
        eval_epochs: 500,
    };
    assert!(
        report
            .summary()
            .contains("not computed (A has zero variance")
    );
    let json = serde_json::to_value(&report).unwrap();
    assert!(
        json["similarity_error"]
            .as_str()
            .unwrap()
            .contains("zero variance")
    );
}

#[test]
fn floats_read_back_from_json_bit_for_bit() {
    // Issue 35 item 12: a loss written to metrics.jsonl / state.json and read back on resume
    // came back one unit in the last place off (7.6897913932800295 as 7.689791393280029).
    for x in [
        7.6897913932800295_f64,
        0.1 + 0.2,
        1.0 / 3.0,
        2.5e-308,
        123456.78901234567,
    ] {
        let text = serde_json::to_string(&x).unwrap();
        let back: f64 = serde_json::from_str(&text).unwrap();
        assert_eq!(back.to_bits(), x.to_bits(), "{text}");
    }
    let v: serde_json::Value = serde_json::from_str("{\"loss\": 7.6897913932800295}").unwrap();
    assert_eq!(
        v["loss"].as_f64().unwrap().to_bits(),
        7.6897913932800295_f64.to_bits()
    );
}
