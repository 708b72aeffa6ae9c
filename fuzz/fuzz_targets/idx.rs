//! The IDX parser (MNIST / Fashion-MNIST files, raw or gzip) on arbitrary bytes: it must
//! return a value or an error, never panic or allocate beyond what the input justifies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = mmssl_data::read_idx_bytes("fuzz.idx", data) {
        // A parsed array is consistent with its dimensions.
        assert_eq!(a.dims.iter().product::<usize>(), a.data.len());
    }
});
