//! Two `tether serve` nodes on one Redis (`[cluster] engine = "redis"`):
//! every subscriber on every node sees each channel's publications once, in
//! one order, and a client resumes on another node. Needs
//! `TETHER_TEST_REDIS_SERVER` (`scripts/test cluster`); skipped without it.
//!
//! Ignored: `tether serve` routes channels through its in-memory hub only
//! and refuses `[cluster] engine = "redis"`; the Redis engine itself is
//! tested in `serve::cluster`.

mod cluster_support;
mod serve_support;

use cluster_support::redis_server::RedisServer;
use futures_util::StreamExt;
use serde_json::{json, Value};
use serve_support::Server;
use std::time::Duration;
use tether::{ClientBuilder, MaybeTlsStream, Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream>;

fn node(redis: &RedisServer, name: &str) -> Server {
    Server::with_config(&format!(
        r#"
[cluster]
engine = "redis"
redis_url = "{}"
node = "{name}"
probe_interval = "500ms"

[[route]]
path = "/pubsub"
kind = "pubsub"
publish_token = "secret"
client_publish = true
history_size = 100
"#,
        redis.url()
    ))
}

async fn connect(server: &Server) -> Ws {
    ClientBuilder::new(server.ws_url("/pubsub"))
        .connect()
        .await
        .expect("connect")
        .0
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("stream open")
            .expect("no error");
        match m {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

async fn send_json(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
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
        assert_eq!(serve_support::status_of(&r), 200, "{r}");
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
        assert_eq!(serve_support::status_of(&r), 200, "{r}");
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
        assert_eq!(serve_support::status_of(&r), 200, "{r}");
    }
    let mut late = connect(&a).await;
    let ack = subscribe(&mut late, "feed", Some((&epoch, 60))).await;
    assert_eq!(ack["recovered"], false, "{ack}");
    assert_eq!(ack["offset"], 200, "{ack}");
}
