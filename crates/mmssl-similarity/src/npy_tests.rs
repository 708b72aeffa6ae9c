//! Reading representations from .npy files, and the faer and LAPACK linear algebra in agreement.

use super::*;
#[cfg(feature = "lapack")]
use crate::linalg::LinalgBackend;
#[cfg(feature = "lapack")]
use crate::tests::close;
use crate::tests::views;
use ndarray::Array2;

// ---------- .npy input ----------

#[test]
fn npy_round_trip_f32_f64_c_and_fortran() {
    use ndarray_npy::WriteNpyExt;
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = views(130, 6, 3, 3);
    let p64 = dir.path().join("a64.npy");
    a.write_npy(std::fs::File::create(&p64).unwrap()).unwrap();
    assert_eq!(read_matrix(&p64).unwrap(), a);
    let p32 = dir.path().join("a32f.npy");
    let a32 = a.mapv(|x| x as f32).reversed_axes();
    let a32 = a32.t(); // Fortran-ordered view of the original layout
    a32.write_npy(std::fs::File::create(&p32).unwrap()).unwrap();
    let back = read_matrix(&p32).unwrap();
    assert_eq!(back, a.mapv(|x| x as f32 as f64));
}

#[test]
fn npy_errors_name_the_file_and_problem() {
    use ndarray_npy::WriteNpyExt;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.npy");
    let e = read_matrix(&missing).unwrap_err().to_string();
    assert!(e.contains("missing.npy"), "{e}");

    let garbage = dir.path().join("garbage.npy");
    std::fs::write(&garbage, b"this is not numpy").unwrap();
    let e = read_matrix(&garbage).unwrap_err().to_string();
    assert!(
        e.contains("garbage.npy") && e.contains("not a valid .npy"),
        "{e}"
    );

    let one_d = dir.path().join("vec.npy");
    ndarray::arr1(&[1.0f64, 2.0])
        .write_npy(std::fs::File::create(&one_d).unwrap())
        .unwrap();
    let e = read_matrix(&one_d).unwrap_err().to_string();
    assert!(e.contains("2-D") && e.contains("found 1"), "{e}");

    let ints = dir.path().join("ints.npy");
    ndarray::arr2(&[[1i32, 2], [3, 4]])
        .write_npy(std::fs::File::create(&ints).unwrap())
        .unwrap();
    let e = read_matrix(&ints).unwrap_err().to_string();
    assert!(
        e.contains("ints.npy") && e.contains("float32 or float64"),
        "{e}"
    );

    let trunc = dir.path().join("trunc.npy");
    let mut bytes = Vec::new();
    Array2::<f64>::zeros((10, 10))
        .write_npy(&mut bytes)
        .unwrap();
    bytes.truncate(bytes.len() - 8);
    std::fs::write(&trunc, bytes).unwrap();
    let e = read_matrix(&trunc).unwrap_err().to_string();
    assert!(e.contains("trunc.npy") && e.contains("truncated"), "{e}");

    // A 1 KB file whose header claims 2^40 x 64 float64 values: refused from the header,
    // before anything is allocated (it used to abort on the allocation).
    let huge = dir.path().join("huge.npy");
    let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776, 64), }";
    let mut header = dict.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(1024, 0);
    std::fs::write(&huge, &bytes).unwrap();
    let e = read_matrix(&huge).unwrap_err().to_string();
    assert!(
        e.contains("huge.npy") && e.contains("1099511627776") && e.contains("bytes of data"),
        "{e}"
    );
}

// ---------- backends agree ----------

#[cfg(feature = "lapack")]
#[test]
fn faer_and_lapack_agree_to_1e10() {
    let cases = [
        views(140, 500, 16, 24),
        views(141, 60, 10, 3),
        views(142, 30, 40, 20),
    ];
    for (a, b) in cases {
        let rf = Similarity::new()
            .backend(LinalgBackend::Faer)
            .report(a.view(), b.view())
            .unwrap();
        let rl = Similarity::new()
            .backend(LinalgBackend::Lapack)
            .report(a.view(), b.view())
            .unwrap();
        for (x, y) in [
            (rf.cca, rl.cca),
            (rf.svcca, rl.svcca),
            (rf.pwcca, rl.pwcca),
            (rf.cka, rl.cka),
            (rf.cka_debiased, rl.cka_debiased),
        ] {
            match (x, y) {
                (Some(x), Some(y)) => assert!(close(x, y, 1e-10), "{x} vs {y}"),
                (None, None) => {}
                other => panic!("backends disagree on definedness: {other:?}"),
            }
        }
        assert_eq!(rf.svcca_kept, rl.svcca_kept);
    }
}
