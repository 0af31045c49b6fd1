//! Two `tether serve` nodes on one Redis (`[cluster] engine = "redis"`):
//! every subscriber on every node sees each channel's publications once, in
//! one order; a client resumes on another node, also after its node was
//! killed; a Redis restart without persistence reaches every subscriber as
//! a `reset`; `/healthz` and publishes tell when Redis is away. Needs
//! `TETHER_TEST_REDIS_SERVER` (`scripts/test cluster`); skipped without it.

mod cluster_support;

use cluster_support::redis_server::RedisServer;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;
use test_support::serve::Server;
use test_support::ws::{next_json, send_json};
use tether::{ClientBuilder, MaybeTlsStream, Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream>;

fn node(redis: &RedisServer, name: &str) -> Server {
    node_with(redis, name, 100)
}

/// A node keeping `history_size` messages per channel, once it is healthy
/// (its engine connected: before that, publishes are refused with 503).
fn node_with(redis: &RedisServer, name: &str, history_size: usize) -> Server {
    let server = Server::with_config(&format!(
        r#"
[cluster]
engine = "redis"
redis_url = "{}"
node = "{name}"

[limits]
max_connections_per_ip = 5000
max_http_connections_per_ip = 5000

[[route]]
path = "/pubsub"
kind = "pubsub"
publish_token = "secret"
client_publish = true
history_size = {history_size}
"#,
        redis.url()
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while test_support::serve::status_of(&server.get("/healthz")) != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "node {name} did not become healthy"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

/// Publish `data` on `channel` through `server`'s HTTP API; the status.
fn publish(server: &Server, channel: &str, data: Value) -> (u16, String) {
    let r = server.post_json(
        "/api/publish",
        "secret",
        &json!({"channel": channel, "data": data}).to_string(),
    );
    (test_support::serve::status_of(&r), r)
}

async fn connect(server: &Server) -> Ws {
    ClientBuilder::new(server.ws_url("/pubsub"))
        .connect()
        .await
        .expect("connect")
        .0
}

/// Subscribe (with `since` if given); the ack.
async fn subscribe(ws: &mut Ws, channel: &str, since: Option<(&str, u64)>) -> Value {
    let mut req = json!({"op": "subscribe", "channel": channel});
    if let Some((epoch, offset)) = since {
        req["since"] = json!({"epoch": epoch, "offset": offset});
    }
    send_json(ws, req).await;
    let ack = next_json(ws).await;
    assert_eq!(ack["op"], "ack", "{ack}");
    ack
}

/// The next `n` messages of `channel`: (offset, data).
async fn messages(ws: &mut Ws, n: usize) -> Vec<(u64, Value)> {
    let mut got = Vec::new();
    while got.len() < n {
        let m = next_json(ws).await;
        match m["op"].as_str() {
            Some("message") => got.push((m["offset"].as_u64().expect("offset"), m["data"].clone())),
            Some("ack") => {}
            _ => panic!("unexpected {m}"),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_on_two_nodes_reach_every_subscriber_once_in_one_order() {
    let Some(redis) = RedisServer::start("two_nodes", false) else {
        return;
    };
    let nodes = [node(&redis, "a"), node(&redis, "b")];
    let mut subscribers = Vec::new();
    let mut epoch = None;
    for i in 0..6 {
        let mut ws = connect(&nodes[i % 2]).await;
        let ack = subscribe(&mut ws, "news", None).await;
        assert_eq!(ack["offset"], 0, "{ack}");
        let e = ack["epoch"].as_str().unwrap().to_owned();
        assert_eq!(
            epoch.get_or_insert(e.clone()),
            &e,
            "one epoch on both nodes"
        );
        subscribers.push(ws);
    }
    const PUBLISHERS: usize = 4;
    const EACH: usize = 100;
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let mut ws = connect(&nodes[p % 2]).await;
        publishers.push(tokio::spawn(async move {
            for i in 0..EACH {
                send_json(
                    &mut ws,
                    json!({"op": "publish", "channel": "news", "data": format!("{p}-{i}"), "id": i}),
                )
                .await;
                let ack = next_json(&mut ws).await;
                assert_eq!(ack["op"], "ack", "{ack}");
            }
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }
    let n = PUBLISHERS * EACH;
    let mut first: Option<Vec<(u64, Value)>> = None;
    for ws in &mut subscribers {
        let got = messages(ws, n).await;
        let offsets: Vec<u64> = got.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, (1..=n as u64).collect::<Vec<_>>());
        match &first {
            None => first = Some(got),
            Some(f) => assert_eq!(f, &got, "every subscriber sees the same sequence"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_another_node_with_exactly_what_it_missed() {
    let Some(redis) = RedisServer::start("resume_across", false) else {
        return;
    };
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut ws = connect(&a).await;
    let ack = subscribe(&mut ws, "feed", None).await;
    let epoch = ack["epoch"].as_str().unwrap().to_owned();
    for i in 1..=10 {
        let r = b.post_json(
            "/api/publish",
            "secret",
            &json!({"channel": "feed", "data": i}).to_string(),
        );
        assert_eq!(test_support::serve::status_of(&r), 200, "{r}");
    }
    let seen = messages(&mut ws, 10).await;
    assert_eq!(seen.last().unwrap().0, 10);
    drop(ws);
    // Published while the client is away, on both nodes.
    for i in 11..=60 {
        let via = if i % 2 == 0 { &a } else { &b };
        let r = via.post_json(
            "/api/publish",
            "secret",
            &json!({"channel": "feed", "data": i}).to_string(),
        );
        assert_eq!(test_support::serve::status_of(&r), 200, "{r}");
    }
    let mut ws = connect(&b).await;
    let ack = subscribe(&mut ws, "feed", Some((&epoch, 10))).await;
    assert_eq!(ack["recovered"], true, "{ack}");
    assert_eq!(ack["offset"], 60, "{ack}");
    let missed = messages(&mut ws, 50).await;
    assert_eq!(
        missed,
        (11..=60u64).map(|i| (i, json!(i))).collect::<Vec<_>>()
    );
    // Beyond history (100 kept): nothing partial.
    for i in 61..=200 {
        let r = a.post_json(
            "/api/publish",
            "secret",
            &json!({"channel": "feed", "data": i}).to_string(),
        );
        assert_eq!(test_support::serve::status_of(&r), 200, "{r}");
    }
    let mut late = connect(&a).await;
    let ack = subscribe(&mut late, "feed", Some((&epoch, 60))).await;
    assert_eq!(ack["recovered"], false, "{ack}");
    assert_eq!(ack["offset"], 200, "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_without_persistence_resets_every_subscriber() {
    let Some(mut redis) = RedisServer::start("restart_resets", false) else {
        return;
    };
    let nodes = [node(&redis, "a"), node(&redis, "b")];
    let mut subscribers = Vec::new();
    for i in 0..6 {
        let mut ws = connect(&nodes[i % 2]).await;
        let ack = subscribe(&mut ws, "news", None).await;
        subscribers.push((ws, ack["epoch"].as_str().unwrap().to_owned()));
    }
    for i in 1..=5 {
        assert_eq!(publish(&nodes[i % 2], "news", json!(i)).0, 200);
    }
    for (ws, _) in &mut subscribers {
        let got = messages(ws, 5).await;
        assert_eq!(got.last().unwrap().0, 5);
    }
    let old_epoch = subscribers[0].1.clone();
    redis.restart();
    // Both nodes notice, reconnect and catch their channels up (each
    // subscriber gets its reset then) before they call themselves healthy.
    for n in &nodes {
        test_support::serve::health_becomes(n, 200).await;
    }
    for i in 1..=3 {
        let (status, r) = publish(&nodes[i % 2], "news", json!(format!("new-{i}")));
        assert_eq!(status, 200, "{r}");
    }
    let mut new_epoch = None;
    for (ws, epoch) in &mut subscribers {
        assert_eq!(*epoch, old_epoch, "one epoch on both nodes");
        let reset = next_json(ws).await;
        assert_eq!(reset["op"], "reset", "{reset}");
        assert_eq!(reset["channel"], "news");
        let e = reset["epoch"].as_str().unwrap().to_owned();
        assert_ne!(e, old_epoch, "a new epoch after the history was lost");
        assert_eq!(new_epoch.get_or_insert(e.clone()), &e, "{reset}");
        let from = reset["offset"].as_u64().unwrap();
        // Everything after the reset continues from its position, in the
        // new epoch only.
        let got = messages(ws, 3).await;
        let offsets: Vec<u64> = got.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, [from + 1, from + 2, from + 3], "{got:?}");
        assert_eq!(got[2].1, json!("new-3"));
    }
    // The old epoch cannot be resumed any more: said, not replayed.
    let mut late = connect(&nodes[0]).await;
    let ack = subscribe(&mut late, "news", Some((&old_epoch, 5))).await;
    assert_eq!(ack["recovered"], false, "{ack}");
    assert_eq!(ack["epoch"], json!(new_epoch.unwrap()), "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_health_is_503_and_publishes_fail() {
    let Some(mut redis) = RedisServer::start("down_health", false) else {
        return;
    };
    let a = node(&redis, "a");
    test_support::serve::health_becomes(&a, 200).await;
    let mut ws = connect(&a).await;
    subscribe(&mut ws, "news", None).await;
    redis.stop();
    test_support::serve::health_becomes(&a, 503).await;
    let (status, r) = publish(&a, "news", json!(1));
    assert_eq!(status, 503, "{r}");
    assert!(r.contains("unreachable"), "{r}");
    send_json(
        &mut ws,
        json!({"op": "publish", "channel": "news", "data": 1, "id": 7}),
    )
    .await;
    let e = next_json(&mut ws).await;
    assert_eq!(
        (e["op"].as_str(), e["id"].as_u64()),
        (Some("error"), Some(7)),
        "{e}"
    );
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("publish to news failed"),
        "{e}"
    );
    redis.restart();
    test_support::serve::health_becomes(&a, 200).await;
    let (status, r) = publish(&a, "news", json!("back"));
    assert_eq!(status, 200, "{r}");
    // The subscriber hears of the lost history, then the new message.
    let reset = next_json(&mut ws).await;
    assert_eq!(reset["op"], "reset", "{reset}");
    let got = messages(&mut ws, 1).await;
    assert_eq!(got[0].1, json!("back"));
    assert!(a.metric("tether_engine_reconnects_total{engine=\"redis\"}") >= 1);
    assert!(a.metric("tether_engine_resets_total{engine=\"redis\"}") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_of_a_killed_node_resume_on_another_without_loss_or_duplicate() {
    const CLIENTS: usize = 1000;
    const TOTAL: u64 = 120;
    let Some(redis) = RedisServer::start("kill_node", false) else {
        return;
    };
    let mut a = node_with(&redis, "a", 500);
    let b = node_with(&redis, "b", 500);
    let b_url = b.ws_url("/pubsub");
    // Every client: subscribe on A, read until A dies, resume on B with
    // `since`, read up to TOTAL; answers the offsets it saw.
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel::<()>(CLIENTS);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut ws = connect(&a).await;
        let b_url = b_url.clone();
        let ready_tx = ready_tx.clone();
        clients.push(tokio::spawn(async move {
            let ack = subscribe(&mut ws, "storm", None).await;
            let epoch = ack["epoch"].as_str().unwrap().to_owned();
            let mut seen = vec![ack["offset"].as_u64().unwrap()];
            ready_tx.send(()).await.unwrap();
            loop {
                let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
                    .await
                    .expect("a message or the end within 30 s");
                match m {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(&t).unwrap();
                        assert_eq!(v["op"], "message", "{v}");
                        seen.push(v["offset"].as_u64().unwrap());
                    }
                    Some(Ok(_)) => {}
                    // The node is gone.
                    Some(Err(_)) | None => break,
                }
            }
            let mut ws = ClientBuilder::new(&b_url).connect().await.expect("b").0;
            let last = *seen.last().unwrap();
            let ack = subscribe(&mut ws, "storm", Some((&epoch, last))).await;
            assert_eq!(ack["recovered"], true, "{ack}");
            while *seen.last().unwrap() < TOTAL {
                let m = next_json(&mut ws).await;
                assert_eq!(m["op"], "message", "{m}");
                seen.push(m["offset"].as_u64().unwrap());
            }
            seen
        }));
    }
    for _ in 0..CLIENTS {
        ready.recv().await.unwrap();
    }
    // One publisher on B; A is killed (SIGKILL) part way through.
    let mut publisher = connect(&b).await;
    for i in 1..=TOTAL {
        send_json(
            &mut publisher,
            json!({"op": "publish", "channel": "storm", "data": i, "id": i}),
        )
        .await;
        let ack = next_json(&mut publisher).await;
        assert_eq!(ack["op"], "ack", "{ack}\n{}", b.log());
        if i == TOTAL / 3 {
            a.signal("KILL");
            assert!(a.wait_exit(Duration::from_secs(10)).is_some(), "A is gone");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for c in clients {
        let seen = tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .expect("every client finishes")
            .unwrap();
        // The ack's offset, then each message once, in order, none missing.
        let start = seen[0];
        let want: Vec<u64> = (start..=TOTAL).collect();
        assert_eq!(seen, want);
    }
}
