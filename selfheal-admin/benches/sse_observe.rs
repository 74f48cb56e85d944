//! What `Healer::observe` costs while `/events` fans events out to 0 and to 100 stalled
//! clients (connected, never reading), side by side in one run. The hub never waits for
//! a client, so the two should match: observe only touches the healer's queue.
//!
//! Events flow in the background the whole time (dry-run switches, about one per
//! millisecond), so the hub is busy offering them to every client.
#![allow(clippy::print_stderr)] // the run says how many clients were still connected

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use selfheal_core::{Healer, MemoryStore, Signal};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

struct Setup {
    healer: Healer,
    base: String,
    token: String,
    _stalled: Vec<TcpStream>,
    events: tokio::task::JoinHandle<()>,
}

async fn metric(base: &str, token: &str, series: &str) -> Option<f64> {
    let text = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

async fn setup(stalled: usize) -> Setup {
    let healer = Healer::builder().store(MemoryStore::new()).build().unwrap();
    std::mem::forget(healer.spawn()); // runs until the process ends
    let token = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let config =
        selfheal_admin::AdminConfig::default().token(selfheal_admin::Role::Viewer, "bench", &token);
    let app = selfheal_admin::router(healer.clone(), config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let base = format!("http://{addr}");
    let mut clients = Vec::new();
    for _ in 0..stalled {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut s = socket.connect(addr).await.unwrap();
        let request =
            format!("GET /events HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n");
        s.write_all(request.as_bytes()).await.unwrap();
        clients.push(s);
    }
    // Every stalled client is registered before measuring.
    while metric(&base, &token, "selfheal_admin_sse_clients").await != Some(stalled as f64) {
        tokio::task::yield_now().await;
    }
    let generator = healer.clone();
    let events = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        let mut on = false;
        loop {
            tick.tick().await;
            on = !on;
            generator.admin().set_dry_run(on, "bench").await;
        }
    });
    Setup {
        healer,
        base,
        token,
        _stalled: clients,
        events,
    }
}

fn observe(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("observe_with_sse");
    for stalled in [0usize, 100] {
        let setup = rt.block_on(setup(stalled));
        let mut n = 0u64;
        group.bench_with_input(
            BenchmarkId::new("stalled_clients", stalled),
            &stalled,
            |b, _| {
                b.iter(|| {
                    n += 1;
                    setup.healer.observe(black_box(Signal::new(
                        "bench",
                        format!("connection refused by peer (attempt {})", n % 64),
                    )))
                })
            },
        );
        let (connected, dropped) = rt.block_on(async {
            (
                metric(&setup.base, &setup.token, "selfheal_admin_sse_clients").await,
                metric(
                    &setup.base,
                    &setup.token,
                    "selfheal_admin_sse_dropped_clients_total",
                )
                .await,
            )
        });
        eprintln!(
            "{stalled} stalled clients: {connected:?} still connected, {dropped:?} dropped for not reading"
        );
        setup.events.abort();
    }
    group.finish();
}

criterion_group!(benches, observe);
criterion_main!(benches);
