//! The process-wide settings the CPU kernels want, applied once by the library itself.
//!
//! [`configure`] runs the first time any layer of [`crate::nn`] runs forward (and whenever a program
//! calls it first): it sets glibc's allocator to keep freed memory for reuse. [`on_pool`] runs
//! a closure on a pool thread, as the training loop does for its steps and evaluation passes.

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

/// Runs `f` on a thread of a rayon pool, so that the CPU kernels' parallel loops (and burn's)
/// start from inside a pool instead of handing every operation to a pool thread and putting
/// the calling thread to sleep until it is done. The training loop runs its steps this way, and
/// the validation and feature passes; so should a hand-written training loop or benchmark on
/// the CPU. Applies [`configure`] first.
///
/// With more than one thread in rayon's global pool, `f` runs on one of them. With a single
/// thread it runs on a second, dedicated one-thread pool instead (built on first use, named
/// `mmssl-step`): a dataset whose loader itself uses the global pool can then never wait on the
/// thread that waits for its batch, and the step still runs its loops in place. Before this
/// pool, a one-thread step ran on the calling thread and paid two thread switches per parallel
/// operation: the 2D CR-XX-CC step of batch 64 took 118 ms instead of 85-94 ms on a 2-core
/// AVX-512 Xeon (docs/performance.md). Called from a pool thread, `f` runs in place.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    configure();
    if rayon::current_thread_index().is_some() {
        return f();
    }
    if rayon::current_num_threads() > 1 {
        return rayon::scope(|_| f());
    }
    match step_pool() {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

/// The one-thread pool of [`on_pool`] when rayon's global pool has a single thread, or `None`
/// where no thread could be started (the step then runs on the calling thread).
fn step_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "mmssl-step".into())
            .build()
            .ok()
    })
    .as_ref()
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
        // On a pool thread whatever the global pool's size, and one of the global pool's
        // exactly when it has more than one thread.
        let (inside, threads, name) = on_pool(|| {
            let name = std::thread::current().name().map(str::to_owned);
            (
                rayon::current_thread_index(),
                rayon::current_num_threads(),
                name,
            )
        });
        assert!(inside.is_some(), "not on a pool thread");
        let global = rayon::current_num_threads();
        if global > 1 {
            assert_eq!(threads, global);
        } else {
            assert_eq!((threads, name.as_deref()), (1, Some("mmssl-step")));
        }
        assert_eq!(on_pool(|| 6 * 7), 42);
        // Nested: runs in place on the same thread.
        let same = on_pool(|| {
            let outer = std::thread::current().id();
            on_pool(|| std::thread::current().id()) == outer
        });
        assert!(same);
    }

    #[test]
    fn the_step_pool_has_one_named_thread_and_runs_loops_in_place() {
        let pool = step_pool().expect("a thread could not be started");
        let (threads, name, ids) = pool.install(|| {
            use rayon::prelude::*;
            let ids: Vec<_> = (0..64)
                .into_par_iter()
                .map(|_| std::thread::current().id())
                .collect();
            let name = std::thread::current().name().map(str::to_owned);
            (rayon::current_num_threads(), name, ids)
        });
        assert_eq!((threads, name.as_deref()), (1, Some("mmssl-step")));
        assert!(
            ids.iter().all(|id| *id == ids[0]),
            "a loop left the step thread"
        );
        assert!(std::ptr::eq(pool, step_pool().unwrap()), "built twice");
    }
}
