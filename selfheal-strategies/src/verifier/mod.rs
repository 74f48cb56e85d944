//! Verifiers: how the healer measures a target's health after an action.

mod composite;
mod http;
mod quiet;
mod tcp;

pub use composite::{Combine, CompositeVerifier};
pub use http::HttpVerifier;
pub use quiet::QuietVerifier;
pub use tcp::TcpVerifier;
