//! `on_pool` when rayon's global pool has a single thread (its own process: the global pool is
//! configured once per process).

use rayon::prelude::*;
use std::sync::mpsc;

#[test]
fn a_one_thread_step_runs_in_place_and_never_blocks_the_global_pool() {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .expect("the global pool was already built");
    assert_eq!(rayon::current_num_threads(), 1);
    let sum = mmssl_kernels::on_pool(|| {
        let step = std::thread::current().id();
        assert_eq!(std::thread::current().name(), Some("mmssl-step"));
        // The step's own parallel loops stay on its thread.
        let ids: Vec<_> = (0..32)
            .into_par_iter()
            .map(|_| std::thread::current().id())
            .collect();
        assert!(ids.iter().all(|id| *id == step));
        // A loader thread using the global pool while the step waits for its result: with the
        // step on the global pool's only thread this would never finish.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let sum: u64 = (1..=100u64).into_par_iter().sum();
            tx.send(sum).unwrap();
        });
        rx.recv().unwrap()
    });
    assert_eq!(sum, 5050);
}
