//! The process-wide settings the CPU kernels want, applied once by the library itself.
//!
//! [`configure`] runs the first time any layer of [`crate::nn`] runs forward (and whenever a program
//! calls it first): it sets glibc's allocator to keep freed memory for reuse. [`on_pool`] runs
//! a closure on a thread of rayon's pool, which the training loop does for every step.

use std::sync::OnceLock;

/// Whether [`configure`] applied the allocator settings, once it has run.
static INIT: OnceLock<bool> = OnceLock::new();

/// Applies the runtime settings once per process (later calls return at once) and returns
/// whether the allocator settings took effect (`false` except on Linux with glibc).
///
/// The library calls it before its first kernel runs, so a program needs no call of its own;
/// calling it first thing in `main` makes every allocation, including the data loading before
/// training, follow the settings.
pub fn configure() -> bool {
    *INIT.get_or_init(tune_allocator)
}

/// The former name of [`configure`] (renamed: every component's `Config::init` builds a
/// value; this one sets process-wide state).
#[deprecated(since = "0.1.0", note = "renamed configure")]
pub fn init() -> bool {
    configure()
}

/// Sets glibc's allocator to keep freed memory for reuse: blocks up to 32 MiB come from the
/// heap (not fresh `mmap`s) and freed memory stays with the process (up to 1 GiB at the top of
/// the heap). A training step allocates and frees many buffers of 1-30 MB; by default glibc's
/// adaptive thresholds kept returning them to the system, and every step paid page faults and
/// kernel zeroing again (2D step on two cores: ~56 ms -> ~50 ms; the first 2D convolution
/// alone 2.1 -> 0.3 ms). The cost is a process that keeps its peak memory.
///
/// A process-wide setting, applied by [`configure`]; safe to call more than once. Does nothing
/// except on Linux with glibc. Returns whether the settings were applied.
pub fn tune_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; it is thread-safe in glibc.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Runs `f` on a thread of rayon's pool when it has more than one: the CPU kernels' parallel
/// loops then start from inside the pool, without waking a pool thread and putting the calling
/// thread to sleep for every operation (~10% of a 2D step on two cores). The training loop runs
/// its steps this way; so should a hand-written training loop or benchmark on the CPU. With a
/// single pool thread `f` runs on the calling thread instead, so that a dataset which itself
/// uses rayon cannot wait on the thread that waits for its batch. Applies [`configure`] first.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    configure();
    if rayon::current_num_threads() > 1 {
        rayon::scope(|_| f())
    } else {
        f()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allocator_settings_apply_once_on_glibc() {
        let glibc = cfg!(all(target_os = "linux", target_env = "gnu"));
        assert_eq!(configure(), glibc, "mallopt refused a setting");
        assert_eq!(configure(), glibc);
        assert_eq!(tune_allocator(), glibc);
        // Allocation still works afterwards, small and large.
        assert_eq!(crate::host::zeros(40 << 20).len(), 40 << 20);
    }

    #[test]
    fn on_pool_returns_the_closures_value_on_a_pool_thread() {
        let inside = on_pool(|| rayon::current_thread_index().is_some());
        assert_eq!(inside, rayon::current_num_threads() > 1);
        assert_eq!(on_pool(|| 6 * 7), 42);
    }
}
