//! The NIfTI-1 / NIfTI-2 header parser and the volume reader (raw or gzip) on arbitrary bytes:
//! a value or an error, never a panic, and no allocation beyond what the input justifies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let header = mmssl_data::parse_nifti_header("fuzz.nii", data);
    if let Ok(volume) = mmssl_data::read_nifti_bytes("fuzz.nii", data) {
        // A volume implies a valid header that agrees with it, and finite data.
        let info = header.expect("a readable volume has a readable header");
        assert_eq!(info.dims4(), volume.dims());
        assert_eq!(volume.data().len(), volume.dims().iter().product::<usize>());
        assert!(volume.data().iter().all(|v| v.is_finite()));
    }
});
