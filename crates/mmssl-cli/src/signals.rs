//! Stopping a run cleanly on a signal: [`mmssl_protocol::signals`].

pub use mmssl_protocol::EXIT_INTERRUPTED;
pub use mmssl_protocol::signals::{install, requested};
