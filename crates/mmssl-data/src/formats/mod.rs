//! File formats: IDX (MNIST), MATLAB `.mat` (SVHN), NIfTI-1 and NIfTI-2 volumes, and a
//! description of any of them ([`describe`]).

pub(crate) mod describe;
pub(crate) mod gzip;
pub(crate) mod idx;
pub(crate) mod mat;
pub(crate) mod nifti;

pub use describe::{Description, describe};
pub use idx::{
    IdxArray, MnistSplit, embedded_mnist_test, load_mnist_dir, read_idx, read_idx_bytes,
    read_idx_images,
};
pub use mat::{MatArray, MatData, load_svhn_mat, read_mat, read_mat_bytes};
pub use nifti::{
    NiftiHeaderInfo, VoxelType, parse_nifti_header, read_nifti, read_nifti_bytes,
    read_nifti_header, write_nifti,
};
