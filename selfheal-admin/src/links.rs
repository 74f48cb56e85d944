//! The pages behind the Approve / Reject links of approval notifications
//! (`selfheal_core::approval_link`): `GET /links/{token}` shows what the link would
//! do, with the whole plan, and a button; only that button (`POST`) decides. The
//! signed token is the credential, so these two paths need no bearer token; a link is
//! single-use because an approval is decided once, and it expires with its approval.

use axum::{
    Form, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
    routing::get,
};
use selfheal_core::{Approval, ApprovalState, Error, ErrorKind, LinkAction};
use serde::Deserialize;

use crate::state::AppState;

/// Who the audit trail names for a decision taken through a link.
const ACTOR: &str = "approval link";

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/links/{token}", get(confirm).post(follow))
}

/// The confirmation page.
async fn confirm(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    let admin = s.healer.admin();
    let claim = match admin.check_link(&token) {
        Ok(claim) => claim,
        Err(e) => return page_for_error(&e),
    };
    let approval = match admin.approval(claim.approval).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            return page_for_error(&Error::not_found(format!("no approval {}", claim.approval)));
        }
        Err(e) => return page_for_error(&e),
    };
    if approval.state != ApprovalState::Pending {
        return page(StatusCode::CONFLICT, "Already decided", &decided(&approval));
    }
    let verb = match claim.action {
        LinkAction::Approve => "Approve",
        LinkAction::Reject => "Reject",
    };
    let reason = match claim.action {
        LinkAction::Approve => String::new(),
        LinkAction::Reject => "<p><label for=\"reason\">Reason</label><br>\
             <textarea id=\"reason\" name=\"reason\" rows=\"3\" cols=\"60\" required></textarea></p>"
            .to_owned(),
    };
    let body = format!(
        "{}<form method=\"post\">{reason}<button type=\"submit\" id=\"confirm\">{verb} this fix</button></form>\
         <p>The link stops working at {} or once the approval is decided.</p>",
        describe(&approval),
        esc(&claim.expires.to_rfc3339()),
    );
    page(
        StatusCode::OK,
        &format!("{verb} `{}`?", approval.plan.strategy),
        &body,
    )
}

/// The form the confirmation page posts.
#[derive(Debug, Deserialize)]
struct LinkForm {
    #[serde(default)]
    reason: Option<String>,
}

/// Decides, once.
async fn follow(
    State(s): State<AppState>,
    Path(token): Path<String>,
    Form(form): Form<LinkForm>,
) -> Response {
    match s
        .healer
        .admin()
        .follow_link(&token, ACTOR, form.reason.as_deref())
        .await
    {
        Ok(approval) => page(StatusCode::OK, "Done", &decided(&approval)),
        Err(e) => page_for_error(&e),
    }
}

fn describe(a: &Approval) -> String {
    let commands: String = a
        .plan
        .steps
        .iter()
        .map(|step| {
            let command = step
                .command
                .as_ref()
                .map(|c| format!("<br><code>{}</code>", esc(&c.preview())))
                .unwrap_or_default();
            format!("<li>{}{command}</li>", esc(&step.preview))
        })
        .collect();
    format!(
        "<p>Incident <code>{}</code> on <b>{}</b>{}: {}</p><p>Plan <code>{}</code> \
         (risk {:?}, confidence {:.2}):</p><ol>{commands}</ol>",
        a.incident,
        esc(&a.plan.target),
        a.pattern
            .as_deref()
            .map(|p| format!(", pattern <code>{}</code>", esc(p)))
            .unwrap_or_default(),
        esc(&a.reason),
        esc(&a.plan.strategy),
        a.plan.risk,
        a.confidence,
    )
}

fn decided(a: &Approval) -> String {
    format!(
        "<p id=\"state\">Approval <code>{}</code> is <b>{}</b>{}{}.</p>{}",
        a.id,
        a.state.as_str(),
        a.decided_by
            .as_deref()
            .map(|by| format!(" by {}", esc(by)))
            .unwrap_or_default(),
        a.note
            .as_deref()
            .map(|n| format!(" ({})", esc(n)))
            .unwrap_or_default(),
        describe(a)
    )
}

fn page_for_error(e: &Error) -> Response {
    let status = match e.kind() {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    page(
        status,
        "This link cannot be used",
        &format!("<p id=\"error\">{}</p>", esc(e.message())),
    )
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>selfheal: {t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}}\
         code{{background:#eee;padding:0 .2rem}}button{{font-size:1.1rem;padding:.4rem 1rem}}</style>\
         </head><body><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    );
    (
        status,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Html(html),
    )
        .into_response()
}

/// Escapes text for HTML (element content and quoted attributes).
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_is_escaped() {
        assert_eq!(
            super::esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }
}
