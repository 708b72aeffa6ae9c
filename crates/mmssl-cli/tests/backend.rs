//! Backend selection: the CPU always works, a backend not compiled in is a clear error.

use burn::tensor::Tensor;
use mmssl_cli::backend::{BackendError, BackendKind, compiled, select_device};

#[test]
fn cpu_is_always_available_and_computes() {
    let device = select_device(BackendKind::Cpu).unwrap();
    let t = Tensor::<1>::from_floats([1.0, 2.0], &device);
    assert_eq!(
        (t * 3.0).into_data().try_to_vec::<f32>().unwrap(),
        vec![3.0, 6.0]
    );
}

#[test]
fn backends_not_compiled_in_are_clear_errors() {
    for kind in BackendKind::ALL {
        if compiled(kind) {
            continue;
        }
        let err = select_device(kind).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, BackendError::NotCompiled { .. }));
        assert!(
            msg.contains(&format!("--features {}", kind.name())),
            "{msg}"
        );
    }
}
