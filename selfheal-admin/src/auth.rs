//! Who is calling: bearer tokens or the host's own auth, and two roles.
//! (Skeleton: the admin-API helper completes it.)

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use serde::Serialize;

use crate::state::AppState;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Read and act.
    Operator,
}

/// The authenticated caller: the actor of every change it makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// Who (goes to the audit trail).
    pub name: String,
    /// What they may do.
    pub role: Role,
}

pub(crate) async fn authenticate(
    State(_state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    next.run(request).await
}
