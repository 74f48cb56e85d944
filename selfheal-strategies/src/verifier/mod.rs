//! Verifiers: how the healer measures a target's health after an action.

mod http;

pub use http::HttpVerifier;
