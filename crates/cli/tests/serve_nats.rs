//! Two `tether serve` nodes on one NATS server (`[cluster] engine =
//! "nats"`, a broker only): publications cross nodes, `/healthz` and
//! publishes tell when NATS is away, subscribers get a `reset` when
//! publications may have been lost, and routes that need stored state are
//! refused. Needs `TETHER_TEST_NATS_SERVER` (`scripts/test cluster`);
//! skipped without it (the configuration checks always run).

mod cluster_support;

use cluster_support::nats_server::NatsServer;
use serde_json::{json, Value};
use std::time::Duration;
use test_support::serve::Server;
use test_support::ws::next_json;
use tether::{ClientBuilder, MaybeTlsStream, Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream>;

const ROUTE: &str = r#"
[[route]]
path = "/pubsub"
kind = "pubsub"
publish_token = "secret"
client_publish = true
"#;

fn node(nats: &NatsServer, name: &str) -> Server {
    Server::with_config(&format!(
        "[cluster]\nengine = \"nats\"\nnats_url = \"{}\"\nnode = \"{name}\"\nprobe_interval = \"500ms\"\n{ROUTE}",
        nats.url()
    ))
}

async fn connect(server: &Server) -> Ws {
    ClientBuilder::new(server.ws_url("/pubsub"))
        .connect()
        .await
        .expect("connect")
        .0
}

async fn subscribe(ws: &mut Ws, channel: &str) -> Value {
    ws.send(Message::text(
        json!({"op": "subscribe", "channel": channel}).to_string(),
    ))
    .await
    .unwrap();
    let ack = next_json(ws).await;
    assert_eq!(ack["op"], "ack", "{ack}");
    ack
}

fn publish(server: &Server, channel: &str, data: Value) -> String {
    server.post_json(
        "/api/publish",
        "secret",
        &json!({"channel": channel, "data": data}).to_string(),
    )
}

#[test]
fn routes_that_need_stored_state_are_refused_naming_the_key() {
    let cluster = "[cluster]\nengine = \"nats\"\nnats_url = \"nats://127.0.0.1:4222\"\n";
    for (option, key) in [
        ("history_size = 10", "`history_size`"),
        ("presence = true", "`presence`"),
    ] {
        let e = Server::refused_config(&format!("{cluster}{ROUTE}{option}\n"), |_| {});
        assert!(e.contains(key) && e.contains("nats"), "{option}: {e}");
    }
    let e = Server::refused_config(&format!("[cluster]\nengine = \"nats\"\n{ROUTE}"), |_| {});
    assert!(e.contains("`cluster.nats_url` is required"), "{e}");
    let e = Server::refused_config(
        &format!(
            "[cluster]\nengine = \"nats\"\nnats_url = \"nats://x\"\nprefix = \"a.>\"\n{ROUTE}"
        ),
        |_| {},
    );
    assert!(e.contains("`cluster.prefix`"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publications_cross_nodes_and_an_outage_is_visible() {
    let Some(mut nats) = NatsServer::start("serve_nats") else {
        return;
    };
    let a = node(&nats, "a");
    let b = node(&nats, "b");
    test_support::serve::health_becomes(&a, 200).await;
    test_support::serve::health_becomes(&b, 200).await;
    let mut ws = connect(&b).await;
    let ack = subscribe(&mut ws, "news").await;
    let epoch = ack["epoch"].as_str().expect("an epoch").to_owned();
    for i in 1..=5 {
        let r = publish(&a, "news", json!(i));
        assert_eq!(test_support::serve::status_of(&r), 200, "{r}");
    }
    // A client publishes on b: the same channel, through NATS.
    let mut publisher = connect(&b).await;
    publisher
        .send(Message::text(
            json!({"op": "publish", "channel": "news", "data": 6, "id": 1}).to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(next_json(&mut publisher).await["op"], "ack");
    for i in 1..=6u64 {
        let m = next_json(&mut ws).await;
        assert_eq!(m["op"], "message", "{m}");
        assert_eq!(m["offset"], i, "{m}");
        assert_eq!(m["data"], i, "{m}");
    }
    // An idempotent publish needs stored state: refused, not silently
    // published twice.
    let r = a.post_json(
        "/api/publish",
        "secret",
        &json!({"channel": "news", "data": 0, "idempotency_key": "k"}).to_string(),
    );
    assert_eq!(test_support::serve::status_of(&r), 503, "{r}");
    assert!(r.contains("idempotency_key"), "{r}");

    nats.stop();
    test_support::serve::health_becomes(&a, 503).await;
    let r = publish(&a, "news", json!("lost"));
    assert_eq!(test_support::serve::status_of(&r), 503, "{r}");
    // The subscriber is told that continuity was lost.
    let reset = next_json(&mut ws).await;
    assert_eq!(reset["op"], "reset", "{reset}");
    assert_ne!(reset["epoch"], epoch.as_str(), "{reset}");

    nats.start_again();
    test_support::serve::health_becomes(&a, 200).await;
    test_support::serve::health_becomes(&b, 200).await;
    // The nodes resubscribe by themselves; publish until one arrives.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = publish(&a, "news", json!("again"));
        assert_eq!(test_support::serve::status_of(&r), 200, "{r}");
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(200), next_json(&mut ws)).await {
            if m["op"] == "reset" {
                continue;
            }
            assert_eq!(m["op"], "message", "{m}");
            assert_eq!(m["offset"], 1, "the new epoch starts at 1: {m}");
            assert_eq!(m["data"], "again");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing delivered after the restart"
        );
    }
}
