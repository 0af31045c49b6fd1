//! `tether serve` WebSocket routes and their policies, through the real
//! binary and the `tether` client.
//!
//! One file over 800 lines: one test binary (one link of the serve
//! harness) for every route kind's behaviour, each test short.

use futures_util::StreamExt;
use http::{HeaderName, HeaderValue};
use serde_json::{json, Value};
use std::time::Duration;
use test_support::serve::{rejected_status, status_of, Server};
use test_support::ws::{close_of, next_json, next_text, send_json};
use tether::{ClientBuilder, MaybeTlsStream, Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream>;

const CONFIG: &str = r#"
[limits]
max_connections_per_ip = 50

[[route]]
path = "/echo"
kind = "echo"

[[route]]
path = "/chat/{room}"
kind = "room"

[[route]]
path = "/pubsub"
kind = "pubsub"
publish_token = "backend-secret"
client_publish = true

[[route]]
path = "/open"
kind = "echo"
origins = ["*"]

[[route]]
path = "/partners"
kind = "echo"
origins = ["https://app.example"]

[[route]]
path = "/private"
kind = "echo"
auth = { tokens = ["letmein"], cookie = "session" }

[[route]]
path = "/jwt"
kind = "pubsub"
auth = { jwt_secret = "jwt-secret" }

[[route]]
path = "/proto"
kind = "echo"
protocols = ["v2.tether", "v1.tether"]
"#;

async fn connect(url: &str) -> Ws {
    ClientBuilder::new(url).connect().await.expect("connect").0
}

#[tokio::test]
async fn echo_round_trips_text_and_binary() {
    let server = Server::with_config(CONFIG);
    let mut ws = connect(&server.ws_url("/echo")).await;
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "hello");
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![1u8, 2, 3])
    );
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn room_broadcasts_to_others_in_the_same_room_only() {
    let server = Server::with_config(CONFIG);
    let mut a = connect(&server.ws_url("/chat/lobby")).await;
    let mut b = connect(&server.ws_url("/chat/lobby")).await;
    let mut other = connect(&server.ws_url("/chat/elsewhere")).await;
    // Joining is done once the handshake is; still, let the server register b.
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.send(Message::text("hi from a")).await.unwrap();
    assert_eq!(next_text(&mut b).await, "hi from a");
    b.send(Message::text("hi from b")).await.unwrap();
    // a gets b's message and never its own.
    assert_eq!(next_text(&mut a).await, "hi from b");
    other.send(Message::text("other room")).await.unwrap();
    a.send(Message::text("second")).await.unwrap();
    assert_eq!(next_text(&mut b).await, "second");
    // `other` saw nothing from the lobby: its next message is a fresh one in its room.
    let mut other2 = connect(&server.ws_url("/chat/elsewhere")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    other2.send(Message::text("ping elsewhere")).await.unwrap();
    assert_eq!(next_text(&mut other).await, "ping elsewhere");
    assert_eq!(
        server.metric("tether_messages_in_total{route=\"/chat/{room}\",kind=\"room\"}"),
        5
    );
}

#[tokio::test]
async fn pubsub_protocol_and_http_publish() {
    let server = Server::with_config(CONFIG);
    let mut sub = connect(&server.ws_url("/pubsub")).await;
    send_json(
        &mut sub,
        json!({"op": "subscribe", "channel": "news", "id": 1}),
    )
    .await;
    let ack = next_json(&mut sub).await;
    let epoch = ack["epoch"]
        .as_str()
        .expect("the channel's epoch")
        .to_owned();
    assert_eq!(
        ack,
        json!({"op": "ack", "channel": "news", "id": 1, "epoch": epoch, "offset": 0})
    );
    let mut publ = connect(&server.ws_url("/pubsub")).await;
    send_json(
        &mut publ,
        json!({"op": "publish", "channel": "news", "data": {"n": 1}, "id": "p1"}),
    )
    .await;
    assert_eq!(
        next_json(&mut sub).await,
        json!({"op": "message", "channel": "news", "offset": 1, "data": {"n": 1}})
    );
    assert_eq!(
        next_json(&mut publ).await,
        json!({"op": "ack", "channel": "news", "id": "p1", "delivered": 1, "epoch": epoch, "offset": 1})
    );
    send_json(&mut publ, json!({"op": "shout"})).await;
    assert_eq!(next_json(&mut publ).await["op"], "error");

    // A backend publishes over HTTP with the bearer token.
    let body = r#"{"channel":"news","data":"from backend"}"#;
    let req = |auth: &str| {
        format!(
            "POST /api/publish HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            server.addr,
            body.len()
        )
    };
    let denied = server.raw_http(&req(""));
    assert_eq!(status_of(&denied), 401);
    let wrong = server.raw_http(&req("Authorization: Bearer nope\r\n"));
    assert_eq!(status_of(&wrong), 401);
    let ok = server.raw_http(&req("Authorization: Bearer backend-secret\r\n"));
    assert_eq!(status_of(&ok), 200, "{ok}");
    assert_eq!(
        Server::json_body(&ok),
        json!({"delivered": 1, "epoch": epoch, "offset": 2})
    );
    assert_eq!(
        next_json(&mut sub).await,
        json!({"op": "message", "channel": "news", "offset": 2, "data": "from backend"})
    );

    send_json(&mut sub, json!({"op": "unsubscribe", "channel": "news"})).await;
    assert_eq!(next_json(&mut sub).await["op"], "ack");
    let after = server.raw_http(&req("Authorization: Bearer backend-secret\r\n"));
    assert!(after.ends_with(r#"{"delivered":0}"#), "{after}");
}

#[tokio::test]
async fn cross_origin_is_refused_with_403_and_same_origin_allowed() {
    let server = Server::with_config(CONFIG);
    let url = server.ws_url("/echo");
    let err = ClientBuilder::new(&url)
        .origin("http://evil.example")
        .connect()
        .await
        .unwrap_err();
    assert_eq!(rejected_status(&err), 403);
    // Same host, other port: another origin.
    let err = ClientBuilder::new(&url)
        .origin("http://127.0.0.1:1")
        .connect()
        .await
        .unwrap_err();
    assert_eq!(rejected_status(&err), 403);
    let (mut ws, _) = ClientBuilder::new(&url)
        .origin(server.origin())
        .connect()
        .await
        .unwrap();
    ws.send(Message::text("same origin")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "same origin");
    // No Origin at all: not a browser, allowed.
    connect(&url).await;
    // `*` must be explicit, and then anything goes.
    ClientBuilder::new(server.ws_url("/open"))
        .origin("http://evil.example")
        .connect()
        .await
        .unwrap();
    // An allowlist is exact.
    let partners = server.ws_url("/partners");
    ClientBuilder::new(&partners)
        .origin("https://app.example")
        .connect()
        .await
        .unwrap();
    let err = ClientBuilder::new(&partners)
        .origin(server.origin())
        .connect()
        .await
        .unwrap_err();
    assert_eq!(rejected_status(&err), 403);
    assert_eq!(
        server.metric("tether_handshakes_rejected_total{reason=\"origin\"}"),
        3
    );
}

#[tokio::test]
async fn wrong_host_websocket_is_refused_with_421() {
    let server = Server::with_config(CONFIG);
    let err = ClientBuilder::new(format!("ws://evil.example:{}/echo", server.addr.port()))
        .connect_on(tokio::net::TcpStream::connect(server.addr).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(rejected_status(&err), 421);
    // localhost is a loopback name: accepted.
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    ClientBuilder::new(format!("ws://localhost:{}/echo", server.addr.port()))
        .connect_on(tcp)
        .await
        .unwrap();
}

#[tokio::test]
async fn auth_by_bearer_header_cookie_or_query() {
    let server = Server::with_config(CONFIG);
    let url = server.ws_url("/private");
    let err = ClientBuilder::new(&url).connect().await.unwrap_err();
    assert_eq!(rejected_status(&err), 401);
    let bearer = |v: &str| HeaderValue::from_str(v).unwrap();
    let err = ClientBuilder::new(&url)
        .header(http::header::AUTHORIZATION, bearer("Bearer wrong"))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(rejected_status(&err), 401);
    ClientBuilder::new(&url)
        .header(http::header::AUTHORIZATION, bearer("Bearer letmein"))
        .connect()
        .await
        .unwrap();
    ClientBuilder::new(&url)
        .header(
            HeaderName::from_static("cookie"),
            bearer("theme=dark; session=letmein"),
        )
        .connect()
        .await
        .unwrap();
    connect(&format!("{url}?access_token=letmein")).await;
    assert_eq!(
        server.metric("tether_handshakes_rejected_total{reason=\"auth\"}"),
        2
    );
}

#[tokio::test]
async fn jwt_claims_limit_pubsub_channels() {
    let server = Server::with_config(CONFIG);
    let token = |claims: Value, secret: &[u8]| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let exp = 4_000_000_000u64;
    let good = token(
        json!({"sub": "ann", "exp": exp, "subscribe": ["public.*"], "publish": ["public.chat"]}),
        b"jwt-secret",
    );
    let forged = token(
        json!({"sub": "eve", "exp": exp, "subscribe": ["*"], "publish": ["*"]}),
        b"guess",
    );
    let expired = token(
        json!({"sub": "old", "exp": 1000, "subscribe": ["*"]}),
        b"jwt-secret",
    );
    let url = server.ws_url("/jwt");
    for bad in [&forged, &expired] {
        let err = connect_with_token(&url, bad).await.unwrap_err();
        assert_eq!(rejected_status(&err), 401);
    }
    let mut ws = connect_with_token(&url, &good).await.unwrap();
    send_json(
        &mut ws,
        json!({"op": "subscribe", "channel": "public.chat", "id": 1}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["op"], "ack");
    send_json(
        &mut ws,
        json!({"op": "subscribe", "channel": "admin", "id": 2}),
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"op": "error", "id": 2, "error": "not allowed to subscribe to admin"})
    );
    send_json(
        &mut ws,
        json!({"op": "publish", "channel": "public.news", "data": 1, "id": 3}),
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await["error"],
        "not allowed to publish to public.news"
    );
    send_json(
        &mut ws,
        json!({"op": "publish", "channel": "public.chat", "data": 2, "id": 4}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["op"], "message");
    let ack = next_json(&mut ws).await;
    assert_eq!(
        (&ack["op"], &ack["id"], &ack["delivered"], &ack["offset"]),
        (&json!("ack"), &json!(4), &json!(1), &json!(1)),
        "{ack}"
    );
}

async fn connect_with_token(url: &str, token: &str) -> tether::Result<Ws> {
    let v = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    ClientBuilder::new(url)
        .header(http::header::AUTHORIZATION, v)
        .connect()
        .await
        .map(|(ws, _)| ws)
}

#[tokio::test]
async fn subprotocol_is_chosen_from_the_route_list() {
    let server = Server::with_config(CONFIG);
    let (_ws, resp) = ClientBuilder::new(server.ws_url("/proto"))
        .protocol("v1.tether")
        .protocol("v2.tether")
        .connect()
        .await
        .unwrap();
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        "v1.tether"
    );
}

#[tokio::test]
async fn connection_limits_hold() {
    let server = Server::with_config_and_args(CONFIG, &["--max-connections-per-ip", "3"]);
    let url = server.ws_url("/echo");
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(connect(&url).await);
    }
    let err = ClientBuilder::new(&url).connect().await.unwrap_err();
    assert_eq!(rejected_status(&err), 429);
    // Closing one frees its slot.
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    assert!(test_support::serve::eventually(
        Duration::from_secs(10),
        || { server.metric("tether_connections_open") == 2 }
    ));
    open.push(connect(&url).await);

    let total = Server::with_config_and_args(CONFIG, &["--max-connections", "1"]);
    let _one = connect(&total.ws_url("/echo")).await;
    let err = ClientBuilder::new(total.ws_url("/echo"))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(rejected_status(&err), 503);
    assert_eq!(
        total.metric("tether_handshakes_rejected_total{reason=\"limit_total\"}"),
        1
    );
}

#[tokio::test]
async fn oversized_message_closes_with_1009() {
    let server = Server::with_config_and_args(CONFIG, &["--max-message-size", "1K"]);
    let mut ws = connect(&server.ws_url("/echo")).await;
    ws.send(Message::binary(vec![0u8; 2048])).await.unwrap();
    assert_eq!(close_of(&mut ws).await.0, 1009);
    // Finish our side of the closing handshake, so the server is done at once.
    while ws.next().await.is_some() {}
    assert!(test_support::serve::eventually(
        Duration::from_secs(10),
        || { server.metric("tether_closes_total{code=\"1009\"}") == 1 }
    ));
}

#[tokio::test]
async fn metrics_count_messages_bytes_and_closes() {
    let server = Server::with_config(CONFIG);
    let mut ws = connect(&server.ws_url("/echo")).await;
    for _ in 0..3 {
        ws.send(Message::text("12345")).await.unwrap();
        next_text(&mut ws).await;
    }
    ws.close(Some(tether::CloseFrame::new(1000u16, "bye")))
        .await
        .unwrap();
    let label = "{route=\"/echo\",kind=\"echo\"}";
    assert!(test_support::serve::eventually(
        Duration::from_secs(10),
        || { server.metric("tether_closes_total{code=\"1000\"}") == 1 }
    ));
    assert_eq!(
        server.metric(&format!("tether_messages_in_total{label}")),
        3
    );
    assert_eq!(server.metric(&format!("tether_bytes_in_total{label}")), 15);
    assert_eq!(
        server.metric(&format!("tether_messages_out_total{label}")),
        3
    );
    assert_eq!(
        server.metric(&format!("tether_route_connections_total{label}")),
        1
    );
    assert_eq!(server.metric("tether_connections_open"), 0);
    // One log line for the close: who closed, with which code and reason.
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains(" close") && l.contains("bye"))
        .expect("close line");
    assert!(
        line.contains("\"client\"") && line.contains("1000"),
        "{line}"
    );
}

#[tokio::test]
async fn virtual_hosts_are_matched_on_host() {
    let server = Server::with_config(
        r#"
[[listen]]
addr = "127.0.0.1:0"
allowed_hosts = ["localhost", "app.example"]

[[route]]
path = "/echo"
kind = "echo"

[[vhost]]
hosts = ["app.example"]

[[vhost.route]]
path = "/app-only"
kind = "echo"
"#,
    );
    let port = server.addr.port();
    let via = |host: &str, path: &str| {
        let url = format!("ws://{host}:{port}{path}");
        let addr = server.addr;
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            ClientBuilder::new(url)
                .connect_on(tcp)
                .await
                .map(|(ws, _)| ws)
        }
    };
    let mut ws = via("app.example", "/app-only").await.unwrap();
    ws.send(Message::text("vhost")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("vhost"));
    // The vhost has only its own routes; the default host does not have its.
    assert_eq!(
        rejected_status(&via("app.example", "/echo").await.unwrap_err()),
        404
    );
    assert_eq!(
        rejected_status(&via("localhost", "/app-only").await.unwrap_err()),
        404
    );
    via("localhost", "/echo").await.unwrap();
    // Not in allowed_hosts: misdirected.
    assert_eq!(
        rejected_status(&via("other.example", "/echo").await.unwrap_err()),
        421
    );
}

#[tokio::test]
async fn a_close_reason_cannot_forge_log_lines() {
    let server = Server::with_config(CONFIG);
    let (mut ws, _) = ClientBuilder::new(server.ws_url("/echo"))
        .connect()
        .await
        .unwrap();
    let reason = "bye\nINFO forged: admin logged in \u{1b}[31mred\u{1b}[0m\r";
    ws.close(Some(tether::CloseFrame::new(
        tether::CloseCode::NORMAL,
        reason,
    )))
    .await
    .unwrap();
    assert!(test_support::serve::eventually(
        Duration::from_secs(10),
        || server.log().contains("close") && server.log().contains("bye")
    ));
    let log = server.log();
    assert!(!log.contains('\u{1b}'), "ESC reached the log:\n{log}");
    assert!(!log.contains('\r'), "CR reached the log:\n{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("INFO forged")),
        "a forged line:\n{log}"
    );
    assert!(log.contains(r"bye\nINFO forged"), "escaped as \\n:\n{log}");
}

/// Subscribe `ws` to `channel` and read the ack.
async fn subscribe(ws: &mut Ws, channel: &str) -> Value {
    send_json(ws, json!({"op": "subscribe", "channel": channel})).await;
    next_json(ws).await
}

#[tokio::test]
async fn a_subscriber_that_never_reads_is_cut_off_by_the_bytes_waiting_for_it() {
    let server = Server::with_config(
        r#"
[limits]
max_body_size = "1M"
max_queued_bytes_per_connection = "2M"

[[route]]
path = "/pubsub"
kind = "pubsub"
publish_token = "t"
"#,
    );
    let mut sub = connect(&server.ws_url("/pubsub")).await;
    let channels = ["a", "b", "c", "d"];
    for ch in channels {
        assert_eq!(subscribe(&mut sub, ch).await["op"], "ack");
    }
    // From here on `sub` reads nothing. Each channel alone stays far below
    // `send_queue` (256) messages; the four together pass 2 MB quickly.
    let data = "x".repeat(200_000);
    let slow = "tether_slow_consumer_closes_total{route=\"/pubsub\",kind=\"pubsub\"}";
    let mut published = 0usize;
    while server.metric(slow) == 0 {
        for ch in channels {
            let body = json!({"channel": ch, "data": data}).to_string();
            let resp = server.post_json("/api/publish", "t", &body);
            assert_eq!(status_of(&resp), 200, "{resp}");
            published += data.len();
        }
        assert!(
            published < 40 << 20,
            "{published} bytes published and the subscriber that never reads is still connected"
        );
    }
    assert_eq!(close_of(&mut sub).await.0, 1008);
}

#[tokio::test]
async fn subscriptions_per_connection_are_capped_with_an_error() {
    let server = Server::with_config(
        r#"
[limits]
max_subscriptions = 2

[[route]]
path = "/pubsub"
kind = "pubsub"
"#,
    );
    let mut ws = connect(&server.ws_url("/pubsub")).await;
    assert_eq!(subscribe(&mut ws, "a").await["op"], "ack");
    assert_eq!(subscribe(&mut ws, "b").await["op"], "ack");
    // Subscribing again to one held is no new subscription.
    assert_eq!(subscribe(&mut ws, "a").await["op"], "ack");
    let refused = subscribe(&mut ws, "c").await;
    assert_eq!(refused["op"], "error", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("limits.max_subscriptions"),
        "{refused}"
    );
    // The connection stays usable: leave one, and the third fits.
    send_json(&mut ws, json!({"op": "unsubscribe", "channel": "a"})).await;
    assert_eq!(next_json(&mut ws).await["op"], "ack");
    assert_eq!(subscribe(&mut ws, "c").await["op"], "ack");
}

#[tokio::test]
async fn anonymous_clients_cannot_publish_into_the_demo_ticker() {
    let server = Server::with_args(&[]);
    let mut watcher = connect(&server.ws_url("/pubsub")).await;
    assert_eq!(subscribe(&mut watcher, "ticker").await["op"], "ack");
    let mut attacker = connect(&server.ws_url("/pubsub")).await;
    send_json(
        &mut attacker,
        json!({"op": "publish", "channel": "ticker", "data": {"quotes": [{"symbol": "ACME", "price": 0.01, "change": -99}]}, "id": 1}),
    )
    .await;
    assert_eq!(
        next_json(&mut attacker).await,
        json!({"op": "error", "id": 1, "error": "not allowed to publish to ticker"})
    );
    // What the watcher gets next is the server's own quote, never the fake.
    let real = next_json(&mut watcher).await;
    assert_eq!(real["op"], "message");
    assert_ne!(real["data"]["quotes"][0]["price"], 0.01, "{real}");
    // The demo's chat rooms are where clients may publish.
    send_json(
        &mut attacker,
        json!({"op": "publish", "channel": "chat.lobby", "data": {"text": "hi"}}),
    )
    .await;
    assert_eq!(next_json(&mut attacker).await["op"], "ack");
}

#[tokio::test]
async fn client_publish_is_a_route_option() {
    let server = Server::with_config(
        r#"
[[route]]
path = "/closed"
kind = "pubsub"

[[route]]
path = "/chat"
kind = "pubsub"
client_publish = ["chat.*"]
"#,
    );
    let publish = |ch: &str| json!({"op": "publish", "channel": ch, "data": 1});
    let mut closed = connect(&server.ws_url("/closed")).await;
    send_json(&mut closed, publish("x")).await;
    assert_eq!(
        next_json(&mut closed).await["error"],
        "not allowed to publish to x"
    );
    let mut chat = connect(&server.ws_url("/chat")).await;
    send_json(&mut chat, publish("chat.lobby")).await;
    assert_eq!(next_json(&mut chat).await["op"], "ack");
    send_json(&mut chat, publish("news")).await;
    assert_eq!(
        next_json(&mut chat).await["error"],
        "not allowed to publish to news"
    );
}

#[tokio::test]
async fn room_and_channel_names_have_a_length_limit() {
    let server = Server::with_config(CONFIG);
    let long_room = "r".repeat(129);
    let err = ClientBuilder::new(server.ws_url(&format!("/chat/{long_room}")))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(rejected_status(&err), 400);
    connect(&server.ws_url(&format!("/chat/{}", "r".repeat(128)))).await;
    let mut ws = connect(&server.ws_url("/pubsub")).await;
    // 65 characters, 130 bytes: the limit counts bytes.
    let refused = subscribe(&mut ws, &"é".repeat(65)).await;
    assert_eq!(refused["error"], "invalid channel name", "{refused}");
    assert_eq!(subscribe(&mut ws, &"c".repeat(128)).await["op"], "ack");
}

const HISTORY: &str = r#"
[[route]]
path = "/pubsub"
kind = "pubsub"
publish_token = "t"
client_publish = true
history_size = 100
presence = true
"#;

/// Publish `data` on `channel` over HTTP; the JSON answer.
fn http_publish(server: &Server, channel: &str, data: Value) -> Value {
    let body = json!({"channel": channel, "data": data}).to_string();
    let resp = server.post_json("/api/publish", "t", &body);
    assert_eq!(status_of(&resp), 200, "{resp}");
    Server::json_body(&resp)
}

/// The next `op: message`'s offset and data.
async fn next_message(ws: &mut Ws) -> (u64, Value) {
    let m = next_json(ws).await;
    assert_eq!(m["op"], "message", "{m}");
    (m["offset"].as_u64().expect("an offset"), m["data"].clone())
}

/// Subscribe with `since`; the ack.
async fn resume(ws: &mut Ws, channel: &str, epoch: &str, offset: u64) -> Value {
    send_json(
        ws,
        json!({"op": "subscribe", "channel": channel, "since": {"epoch": epoch, "offset": offset}}),
    )
    .await;
    next_json(ws).await
}

#[tokio::test]
async fn a_resumed_subscription_gets_exactly_what_it_missed_then_live_ones() {
    let server = Server::with_config(HISTORY);
    let mut sub = connect(&server.ws_url("/pubsub")).await;
    let ack = subscribe(&mut sub, "news").await;
    let epoch = ack["epoch"].as_str().unwrap().to_owned();
    for n in 1..=10 {
        http_publish(&server, "news", json!(n));
    }
    let mut k = 0;
    for _ in 0..10 {
        k = next_message(&mut sub).await.0;
    }
    assert_eq!(k, 10);
    sub.close(None).await.unwrap();
    // 50 published while it is away.
    for n in 11..=60 {
        assert_eq!(http_publish(&server, "news", json!(n))["offset"], n);
    }
    let mut back = connect(&server.ws_url("/pubsub")).await;
    let ack = resume(&mut back, "news", &epoch, k).await;
    assert_eq!(
        ack,
        json!({"op": "ack", "channel": "news", "epoch": epoch, "offset": 60, "recovered": true})
    );
    for want in k + 1..=k + 50 {
        assert_eq!(next_message(&mut back).await, (want, json!(want)));
    }
    http_publish(&server, "news", json!("live"));
    assert_eq!(next_message(&mut back).await, (61, json!("live")));
}

#[tokio::test]
async fn a_resume_beyond_the_history_kept_says_so_and_replays_nothing() {
    let server = Server::with_config(&HISTORY.replace("history_size = 100", "history_size = 20"));
    let mut sub = connect(&server.ws_url("/pubsub")).await;
    let epoch = subscribe(&mut sub, "news").await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    http_publish(&server, "news", json!(1));
    let (k, _) = next_message(&mut sub).await;
    drop(sub);
    for n in 2..=51 {
        http_publish(&server, "news", json!(n));
    }
    let mut back = connect(&server.ws_url("/pubsub")).await;
    let ack = resume(&mut back, "news", &epoch, k).await;
    assert_eq!(ack["recovered"], false, "{ack}");
    assert_eq!(ack["offset"], 51, "{ack}");
    // Nothing partial: the first message after the ack is a live one.
    http_publish(&server, "news", json!("live"));
    assert_eq!(next_message(&mut back).await, (52, json!("live")));
    // Another epoch (say, from before a restart): not recovered either.
    let mut other = connect(&server.ws_url("/pubsub")).await;
    let ack = resume(&mut other, "news", "0000", 3).await;
    assert_eq!(ack["recovered"], false, "{ack}");
    assert_ne!(ack["epoch"], "0000");
}

#[tokio::test]
async fn resuming_while_publishes_flow_leaves_no_gap_and_no_duplicate() {
    const TOTAL: u64 = 400;
    let server = Server::with_config(
        HISTORY
            .replace("history_size = 100", "history_size = 500")
            .as_str(),
    );
    let url = server.ws_url("/pubsub");
    let mut sub = connect(&url).await;
    let epoch = subscribe(&mut sub, "flow").await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    let publisher = {
        let url = url.clone();
        tokio::spawn(async move {
            let mut p = connect(&url).await;
            for n in 1..=TOTAL {
                send_json(
                    &mut p,
                    json!({"op": "publish", "channel": "flow", "data": n}),
                )
                .await;
                if n % 20 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            // Every publish acknowledged: all are in the channel.
            let mut acks = 0;
            while acks < TOTAL {
                if next_json(&mut p).await["op"] == "ack" {
                    acks += 1;
                }
            }
        })
    };
    // Leave after some, come back while the publisher is still going.
    let mut got = Vec::new();
    for _ in 0..50 {
        got.push(next_message(&mut sub).await.0);
    }
    drop(sub);
    let mut back = connect(&url).await;
    let ack = resume(&mut back, "flow", &epoch, *got.last().unwrap()).await;
    assert_eq!(ack["recovered"], true, "{ack}");
    while *got.last().unwrap() < TOTAL {
        got.push(next_message(&mut back).await.0);
    }
    publisher.await.unwrap();
    let want: Vec<u64> = (1..=TOTAL).collect();
    assert_eq!(got, want, "offsets seen across the reconnect");
}

#[tokio::test]
async fn history_and_presence_over_the_websocket_and_http() {
    let server = Server::with_config(HISTORY);
    let mut ws = connect(&server.ws_url("/pubsub")).await;
    assert_eq!(subscribe(&mut ws, "room.1").await["op"], "ack");
    for n in 1..=3 {
        http_publish(&server, "room.1", json!(n));
    }
    for _ in 0..3 {
        next_message(&mut ws).await;
    }
    send_json(
        &mut ws,
        json!({"op": "history", "channel": "room.1", "limit": 2, "id": 9}),
    )
    .await;
    let h = next_json(&mut ws).await;
    assert_eq!(
        (&h["op"], &h["id"], &h["offset"]),
        (&json!("history"), &json!(9), &json!(3))
    );
    let offsets: Vec<_> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["offset"].clone())
        .collect();
    assert_eq!(offsets, [json!(2), json!(3)]);
    send_json(&mut ws, json!({"op": "presence", "channel": "room.1"})).await;
    let p = next_json(&mut ws).await;
    assert_eq!(p["clients"].as_array().unwrap().len(), 1, "{p}");

    let get = |path: &str, token: &str| {
        server.raw_http(&format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
            server.addr
        ))
    };
    assert_eq!(status_of(&get("/api/history?channel=room.1", "wrong")), 401);
    let h = Server::json_body(&get("/api/history?channel=room.1&limit=10", "t"));
    assert_eq!(h["channel"], "room.1");
    assert_eq!(h["messages"].as_array().unwrap().len(), 3, "{h}");
    assert_eq!(h["messages"][0]["data"], 1);
    let p = Server::json_body(&get("/api/presence?channel=room.1", "t"));
    assert_eq!(p["clients"].as_array().unwrap().len(), 1, "{p}");
    assert_eq!(status_of(&get("/api/history", "t")), 400);
}

#[tokio::test]
async fn a_retried_publish_with_an_idempotency_key_is_stored_once() {
    let server = Server::with_config(HISTORY);
    let mut sub = connect(&server.ws_url("/pubsub")).await;
    assert_eq!(subscribe(&mut sub, "orders").await["op"], "ack");
    let body =
        json!({"channel": "orders", "data": "order 17", "idempotency_key": "o-17"}).to_string();
    let first = Server::json_body(&server.post_json("/api/publish", "t", &body));
    let retry = Server::json_body(&server.post_json("/api/publish", "t", &body));
    assert_eq!(first["offset"], 1, "{first}");
    assert_eq!(
        (&retry["offset"], &retry["epoch"]),
        (&first["offset"], &first["epoch"])
    );
    assert_eq!(retry["duplicate"], true, "{retry}");
    http_publish(&server, "orders", json!("next"));
    // The subscriber got the order once, then the next message.
    assert_eq!(next_message(&mut sub).await, (1, json!("order 17")));
    assert_eq!(next_message(&mut sub).await, (2, json!("next")));
    let bad = json!({"channel": "orders", "data": 1, "idempotency_key": 5}).to_string();
    assert_eq!(status_of(&server.post_json("/api/publish", "t", &bad)), 400);
}
