//! The Approve / Reject links of approval notifications, over real HTTP: the healer
//! signs them with the router's public URL, a notifier receives them, opening one
//! shows the plan and decides nothing, confirming decides once, and a tampered,
//! foreign or expired link is refused.

mod api_fixture;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_fixture::{Cleanup, Gauge, token};
use async_trait::async_trait;
use reqwest::StatusCode;
use selfheal_admin::{AdminConfig, Role};
use selfheal_core::{
    ApprovalLinks, Backup, FixBinding, Healer, HealerConfig, LinkAction, Notification,
    NotificationLink, Notifier, Pattern, PatternMode, Phase, Result, Signal, Uuid,
};

#[derive(Debug, Default, Clone)]
struct Inbox(Arc<Mutex<Vec<Notification>>>);

#[async_trait]
impl Notifier for Inbox {
    fn name(&self) -> &str {
        "inbox"
    }
    async fn notify(&self, n: &Notification) -> Result<()> {
        self.0.lock().unwrap().push(n.clone());
        Ok(())
    }
}

fn link(links: &[NotificationLink], label: &str) -> String {
    links
        .iter()
        .find(|l| l.label == label)
        .unwrap_or_else(|| panic!("no {label} link in {links:?}"))
        .url
        .clone()
}

/// A healer whose `db` needs approval to be cleaned, and its router at `/selfheal`.
async fn start(secret: &[u8]) -> (String, Healer, Cleanup, Inbox, selfheal_core::Running) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/selfheal", listener.local_addr().unwrap());
    let mut config = HealerConfig::default();
    config.verification.interval = Duration::from_millis(20);
    config.verification.quiet_for = Duration::ZERO;
    let gauge = Gauge(Arc::new(AtomicU8::new(10)));
    let cleanup = Cleanup {
        gauge: gauge.clone(),
        runs: Arc::default(),
        backup: Arc::new(Mutex::new(Backup {
            id: Uuid::new_v4(),
            strategy: "cleanup".into(),
            target: "db".into(),
            location: "/etc/db.conf".into(),
            size: 1,
            created_at: chrono::Utc::now(),
            restored_at: None,
        })),
    };
    let inbox = Inbox::default();
    let healer = Healer::builder()
        .config(config)
        .strategy(cleanup.clone())
        .verifier("db", gauge)
        .notifier(inbox.clone())
        .approval_links(ApprovalLinks::new(&base, secret).unwrap())
        .build()
        .unwrap();
    let running = healer.spawn();
    healer
        .admin()
        .add_pattern(
            Pattern::new("disk_full")
                .regex("disk full on")
                .mode(PatternMode::Active)
                .auto_healable(true)
                .confidence(0.95)
                .threshold(1, Duration::from_secs(60))
                .fix(FixBinding::new("cleanup").requires_approval(true)),
            "test",
        )
        .await
        .unwrap();
    let admin = AdminConfig::default().token(Role::Operator, "alice", token());
    let app = axum::Router::new().nest("/selfheal", selfheal_admin::router(healer.clone(), admin));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, healer, cleanup, inbox, running)
}

async fn ask(healer: &Healer, inbox: &Inbox) -> Vec<NotificationLink> {
    let mut events = healer.subscribe();
    healer.observe(Signal::new("db", "disk full on /var"));
    tokio::time::timeout(Duration::from_secs(10), async {
        while events.recv().await.unwrap().phase != Phase::AwaitingApproval {}
    })
    .await
    .expect("the incident waits for approval");
    let sent = inbox.0.lock().unwrap();
    let asked = sent
        .iter()
        .find(|n| n.event_type == "self_heal.suggested")
        .expect("the approval was notified");
    asked.links.clone()
}

#[tokio::test]
async fn a_confirmed_approve_link_runs_the_fix_once() {
    let secret: Vec<u8> = (0..32).map(|_| rand_byte()).collect();
    let (base, healer, cleanup, inbox, running) = start(&secret).await;
    let links = ask(&healer, &inbox).await;
    let approve = link(&links, "Approve");
    assert!(approve.starts_with(&format!("{base}/links/")), "{approve}");
    let http = reqwest::Client::new();

    // Opening it (as a chat preview would) shows the plan and decides nothing.
    let page = http.get(&approve).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("cleanup db"), "the plan's steps: {html}");
    assert!(html.contains("Approve this fix"), "{html}");
    assert_eq!(healer.admin().pending_approvals().await.unwrap().len(), 1);
    assert_eq!(cleanup.runs.load(Ordering::SeqCst), 0);

    // Confirming decides, as `approval link`, and the fix runs.
    let mut events = healer.subscribe();
    let done = http
        .post(&approve)
        .form(&[("reason", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    assert!(
        done.text()
            .await
            .unwrap()
            .contains("<b>approved</b> by approval link")
    );
    tokio::time::timeout(Duration::from_secs(10), async {
        while events.recv().await.unwrap().phase != Phase::Verified {}
    })
    .await
    .expect("the fix is verified");
    assert_eq!(cleanup.runs.load(Ordering::SeqCst), 1);

    // Single-use: the same link, or its Reject sibling, cannot decide again.
    for url in [approve.clone(), link(&links, "Reject")] {
        let again = http
            .post(&url)
            .form(&[("reason", "no")])
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::CONFLICT, "{url}");
        assert!(
            again
                .text()
                .await
                .unwrap()
                .contains("approved already, by approval link")
        );
    }
    let audit = healer.admin().audit_log(100).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.event_type == "self_heal.approved" && r.actor == "approval link")
    );
    running.shutdown().await;
}

#[tokio::test]
async fn a_reject_link_takes_a_reason_and_forged_or_expired_links_are_refused() {
    let secret: Vec<u8> = (0..32).map(|_| rand_byte()).collect();
    let (base, healer, cleanup, inbox, running) = start(&secret).await;
    let links = ask(&healer, &inbox).await;
    let reject = link(&links, "Reject");
    let id = healer.admin().pending_approvals().await.unwrap()[0].id;
    let http = reqwest::Client::new();

    // Turning the reject link into an approve link breaks its signature.
    let forged = reject.replacen(".reject.", ".approve.", 1);
    let page = http
        .post(&forged)
        .form(&[("reason", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    // A link signed with another secret.
    let other = ApprovalLinks::new(&base, [9u8; 32]).unwrap();
    let foreign = other.link(
        id,
        LinkAction::Approve,
        chrono::Utc::now() + chrono::TimeDelta::hours(1),
    );
    assert_eq!(
        http.get(&foreign).send().await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    // An expired one, properly signed.
    let mine = ApprovalLinks::new(&base, &secret).unwrap();
    let expired = mine.link(
        id,
        LinkAction::Approve,
        chrono::Utc::now() - chrono::TimeDelta::seconds(1),
    );
    let page = http.get(&expired).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::CONFLICT);
    assert!(page.text().await.unwrap().contains("expired"));
    assert_eq!(
        healer.admin().pending_approvals().await.unwrap().len(),
        1,
        "nothing decided"
    );

    let page = http
        .get(&reject)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("name=\"reason\""), "{page}");
    let done = http
        .post(&reject)
        .form(&[("reason", "<b>not during the sale</b>")])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    let html = done.text().await.unwrap();
    assert!(
        html.contains("&lt;b&gt;not during the sale&lt;/b&gt;"),
        "escaped: {html}"
    );
    let decided = healer.admin().approval(id).await.unwrap().unwrap();
    assert_eq!(decided.note.as_deref(), Some("<b>not during the sale</b>"));
    assert_eq!(cleanup.runs.load(Ordering::SeqCst), 0);
    running.shutdown().await;
}

fn rand_byte() -> u8 {
    Uuid::new_v4().as_bytes()[0]
}
