//! Signed approve / reject links for notifications.
//!
//! When the healer knows the public URL of its admin router
//! ([`HealerBuilder::approval_links`](crate::HealerBuilder::approval_links)), every
//! "approve this fix?" notification carries an Approve and a Reject link. A link is
//! `{public_url}/links/{token}`, where the token is
//! `{approval}.{approve|reject}.{expires, unix seconds}.{HMAC-SHA256, hex}`:
//!
//! - **signed**: only the holder of the secret can make one, and changing any part
//!   (the approval, the action, the expiry) breaks the signature;
//! - **expiring with the approval**: it expires when the approval does
//!   (`safety.approval_ttl` after it was asked);
//! - **single-use**: it decides the approval, and an approval is decided once.
//!
//! Opening a link shows a confirmation page; only confirming (a `POST`) decides, so a
//! chat client that previews links does not approve anything.

use chrono::{DateTime, TimeZone, Utc};
use hmac::{KeyInit, Mac};
use uuid::Uuid;

use crate::{Error, Result};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// What a link does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAction {
    /// Approve the fix.
    Approve,
    /// Reject the fix.
    Reject,
}

impl LinkAction {
    /// `approve` or `reject`.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkAction::Approve => "approve",
            LinkAction::Reject => "reject",
        }
    }
}

/// What a valid link says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkClaim {
    /// The approval.
    pub approval: Uuid,
    /// What to do with it.
    pub action: LinkAction,
    /// When the link stops working.
    pub expires: DateTime<Utc>,
}

/// Where the admin router is reachable and the secret links are signed with.
#[derive(Clone)]
pub struct ApprovalLinks {
    base: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for ApprovalLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovalLinks")
            .field("public_url", &self.base)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl ApprovalLinks {
    /// Links to the admin router mounted at `public_url` (as people reach it, e.g.
    /// `https://ops.example.com/selfheal`), signed with `secret` (at least 32 bytes,
    /// e.g. `openssl rand -hex 32`; keep it out of the config file, and the same on
    /// every replica so any of them can check a link).
    pub fn new(public_url: impl Into<String>, secret: impl AsRef<[u8]>) -> Result<Self> {
        let base = public_url.into().trim_end_matches('/').to_owned();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(Error::invalid(format!(
                "the public URL of the admin router must start with https:// or http://, got `{base}`"
            )));
        }
        let key = secret.as_ref().to_vec();
        if key.len() < MIN_SECRET_LEN {
            return Err(Error::invalid(format!(
                "the approval link secret has {} bytes; use at least {MIN_SECRET_LEN} \
                 (e.g. `openssl rand -hex 32`)",
                key.len()
            )));
        }
        Ok(Self { base, key })
    }

    /// The public URL links start with.
    pub fn public_url(&self) -> &str {
        &self.base
    }

    /// The link that does `action` to `approval` until `expires`.
    pub fn link(&self, approval: Uuid, action: LinkAction, expires: DateTime<Utc>) -> String {
        format!(
            "{}/links/{}",
            self.base,
            self.token(approval, action, expires)
        )
    }

    /// The token of a link (its last path segment).
    pub fn token(&self, approval: Uuid, action: LinkAction, expires: DateTime<Utc>) -> String {
        let claim = format!("{approval}.{}.{}", action.as_str(), expires.timestamp());
        let tag = crate::audit::hex(&self.mac(&claim).finalize().into_bytes());
        format!("{claim}.{tag}")
    }

    /// Checks a token: its signature (in constant time), then its expiry at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<LinkClaim> {
        let bad = || {
            Error::invalid("this approval link is not valid (damaged or not signed by this healer)")
        };
        let (claim, tag) = token.rsplit_once('.').ok_or_else(bad)?;
        let tag = decode_hex(tag).ok_or_else(bad)?;
        self.mac(claim).verify_slice(&tag).map_err(|_| bad())?;
        let mut parts = claim.split('.');
        let (Some(id), Some(action), Some(expires), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let approval = Uuid::parse_str(id).map_err(|_| bad())?;
        let action = match action {
            "approve" => LinkAction::Approve,
            "reject" => LinkAction::Reject,
            _ => return Err(bad()),
        };
        let expires = expires
            .parse::<i64>()
            .ok()
            .and_then(|s| Utc.timestamp_opt(s, 0).single())
            .ok_or_else(bad)?;
        if now >= expires {
            return Err(Error::new(
                crate::ErrorKind::Conflict,
                format!(
                    "this link expired at {} with its approval {approval}; if the error recurs a new \
                     incident asks again",
                    expires.to_rfc3339()
                ),
            ));
        }
        Ok(LinkClaim {
            approval,
            action,
            expires,
        })
    }

    fn mac(&self, claim: &str) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC accepts any key length");
        mac.update(claim.as_bytes());
        mac
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn links() -> ApprovalLinks {
        ApprovalLinks::new("https://ops.example.com/selfheal/", [7u8; 32]).unwrap()
    }

    #[test]
    fn a_link_verifies_until_it_expires_and_not_after() {
        let now = Utc::now();
        let id = Uuid::new_v4();
        let expires = now + TimeDelta::minutes(30);
        let link = links().link(id, LinkAction::Reject, expires);
        assert!(
            link.starts_with("https://ops.example.com/selfheal/links/"),
            "{link}"
        );
        let token = link.rsplit('/').next().unwrap();
        let claim = links().verify(token, now).unwrap();
        assert_eq!((claim.approval, claim.action), (id, LinkAction::Reject));
        let late = links().verify(token, expires).unwrap_err();
        assert!(late.message().contains("expired"), "{late}");
    }

    #[test]
    fn a_changed_or_foreign_link_is_refused() {
        let now = Utc::now();
        let token = links().token(
            Uuid::new_v4(),
            LinkAction::Reject,
            now + TimeDelta::hours(1),
        );
        let approve = token.replacen(".reject.", ".approve.", 1);
        assert!(
            links().verify(&approve, now).is_err(),
            "the action is signed"
        );
        let other = ApprovalLinks::new("https://ops.example.com/selfheal", [8u8; 32]).unwrap();
        assert!(other.verify(&token, now).is_err(), "another secret");
        for junk in [
            "",
            ".",
            "a.b.c.d",
            "x.approve.1.zz",
            &token[..token.len() - 1],
        ] {
            assert!(links().verify(junk, now).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn short_secrets_and_odd_urls_are_refused() {
        assert!(ApprovalLinks::new("https://x", [0u8; 31]).is_err());
        assert!(ApprovalLinks::new("ftp://x", [0u8; 32]).is_err());
        assert!(format!("{:?}", links()).contains("<redacted>"));
    }
}
