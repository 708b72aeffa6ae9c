//! The MATLAB v5 `.mat` parser (as SVHN ships it) on arbitrary bytes: a value or an error,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(arrays) = mmssl_data::read_mat_bytes("fuzz.mat", data) {
        for a in arrays {
            let n: usize = a.dims.iter().product();
            let len = match &a.data {
                mmssl_data::MatData::U8(v) => v.len(),
                mmssl_data::MatData::F64(v) => v.len(),
            };
            assert_eq!(n, len);
        }
    }
});
