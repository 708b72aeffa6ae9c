//! Backend selection: the one place in mmssl that names a burn backend.
//!
//! Libraries take a [`burn::tensor::Device`]; the binary turns `--backend cpu|wgpu|cuda` into
//! one here. A backend that was not compiled in, or whose driver is missing, is a
//! [`BackendError`] with the fix in its message, never a panic.

use burn::tensor::{Device, Tensor};

pub use mmssl_protocol::BackendKind;

/// Whether this binary was built with the backend.
pub fn compiled(kind: BackendKind) -> bool {
    match kind {
        BackendKind::Cpu => true,
        BackendKind::Wgpu => cfg!(feature = "wgpu"),
        BackendKind::Cuda => cfg!(feature = "cuda"),
    }
}

/// Why a backend cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The binary was built without the backend's cargo feature.
    #[error(
        "this mmssl was built without the `{backend}` backend; rebuild with \
         `cargo build --release --features {backend}` (see docs/backends.md)"
    )]
    NotCompiled {
        /// The backend's name.
        backend: &'static str,
    },
    /// The backend is compiled in but its driver or device is missing.
    #[error("the `{backend}` backend is unavailable on this machine: {reason}")]
    Unavailable {
        /// The backend's name.
        backend: &'static str,
        /// What is missing, and what to install.
        reason: String,
    },
}

/// The device for `kind`, checked with a tiny computation so that a missing driver is an
/// error here rather than a panic in the middle of training.
pub fn select_device(kind: BackendKind) -> Result<Device, BackendError> {
    if !compiled(kind) {
        return Err(BackendError::NotCompiled {
            backend: kind.name(),
        });
    }
    let device = match kind {
        BackendKind::Cpu => Device::flex(),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => {
            check_cuda_driver()?;
            Device::cuda(0)
        }
        #[allow(unreachable_patterns)]
        _ => unreachable!("compiled() was checked above"),
    };
    probe(kind, &device)?;
    Ok(device)
}

/// Runs `1 + 1` on the device; a panic inside the backend (no adapter, no driver) becomes an
/// [`BackendError::Unavailable`] carrying the backend's message.
fn probe(kind: BackendKind, device: &Device) -> Result<(), BackendError> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let device = device.clone();
    let outcome = std::panic::catch_unwind(move || {
        let x = Tensor::<1>::ones([1], &device);
        (x.clone() + x).into_data().try_to_vec::<f32>()
    });
    std::panic::set_hook(previous);
    let reason = match outcome {
        Ok(Ok(v)) if v == [2.0] => return Ok(()),
        Ok(Ok(v)) => format!("a test computation returned {v:?} instead of [2.0]"),
        Ok(Err(e)) => format!("could not read a test result back: {e:?}"),
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the backend failed to start".into()),
    };
    let hint = match kind {
        BackendKind::Wgpu => {
            "; wgpu needs a Vulkan, Metal or DX12 driver (on Debian/Ubuntu without a GPU: \
             `apt-get install mesa-vulkan-drivers libvulkan1`)"
        }
        BackendKind::Cuda => "; CUDA needs an NVIDIA GPU with its driver and the CUDA toolkit",
        BackendKind::Cpu => "",
    };
    Err(BackendError::Unavailable {
        backend: kind.name(),
        reason: format!("{reason}{hint}"),
    })
}

/// Fails with a clear message when the NVIDIA driver library cannot be loaded, before burn
/// would panic on it.
#[cfg(feature = "cuda")]
fn check_cuda_driver() -> Result<(), BackendError> {
    let name = if cfg!(windows) {
        "nvcuda.dll"
    } else {
        "libcuda.so.1"
    };
    // SAFETY: loading the NVIDIA driver library runs its initialisers, which is exactly what
    // the CUDA backend does next; the handle is dropped immediately.
    match unsafe { libloading::Library::new(name) } {
        Ok(_) => Ok(()),
        Err(e) => Err(BackendError::Unavailable {
            backend: "cuda",
            reason: format!(
                "the NVIDIA driver library {name} could not be loaded ({e}); install the NVIDIA \
                 driver, or choose `--backend cpu` or `--backend wgpu`"
            ),
        }),
    }
}
