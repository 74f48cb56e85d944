//! The dashboard is served under the host's prefix, its assets resolve under it, and it loads nothing from elsewhere.

mod support;

use selfheal_core::{Healer, MemoryStore};

#[tokio::test]
async fn the_page_and_its_assets_are_served_under_the_mount_point() {
    let healer = Healer::builder().store(MemoryStore::new()).build().unwrap();
    let running = healer.spawn();
    let token = support::token();
    let url = support::serve_nested(&healer, &token).await; // …/selfheal
    let client = reqwest::Client::new();
    for page in [url.clone()] {
        let resp = client.get(&page).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{page}");
        let csp = resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        let html = resp.text().await.unwrap();
        assert!(
            html.contains("<base href=\"/selfheal/\">"),
            "{page}: {html}"
        );
        assert!(html.contains("data-testid=\"token-input\""));
    }
    for (asset, kind) in [
        ("assets/app.js", "text/javascript"),
        ("assets/app.css", "text/css"),
    ] {
        let resp = client.get(format!("{url}/{asset}")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{asset}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        assert!(
            !resp.text().await.unwrap().contains("https://"),
            "{asset} loads nothing remote"
        );
    }
    running.shutdown().await;
}
