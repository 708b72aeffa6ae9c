//! Stopping a run cleanly on a signal: [`mmssl_protocol::signals`].

pub use mmssl_protocol::{EXIT_INTERRUPTED, signals::install, signals::requested};
