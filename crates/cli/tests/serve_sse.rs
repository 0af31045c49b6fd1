//! `tether serve`'s Server-Sent Events for pubsub channels, read with a
//! raw HTTP/1.1 client: the stream's format, resuming with
//! `Last-Event-ID`, the statuses that stop a browser, and the limits a
//! WebSocket subscriber has.

use serde_json::{json, Value};
use std::io::Write;
use std::time::{Duration, Instant};
use test_support::jwt::now;
use test_support::serve::{eventually, Server, SseEvent, SseStream};

const TOKEN: &str = "pub-token";
const WAIT: Duration = Duration::from_secs(10);

fn config(extra: &str) -> String {
    format!(
        r#"
[[route]]
path = "/pubsub"
kind = "pubsub"
publish_token = "{TOKEN}"
sse = true
sse_retry = "1500ms"
{extra}
"#
    )
}

fn publish(server: &Server, channel: &str, data: Value) -> Value {
    let body = json!({"channel": channel, "data": data}).to_string();
    Server::json_body(&server.post_json("/api/publish", TOKEN, &body))
}

/// The next event that carries a message (skipping `retry` and
/// `subscribed`); panics if none comes.
fn message(s: &mut SseStream) -> SseEvent {
    loop {
        let e = s.next_event(WAIT).expect("a message event");
        if e.retry.is_some() || e.event.as_deref() == Some("subscribed") {
            continue;
        }
        assert_eq!(e.event, None, "{e:?}");
        assert_eq!(e.json()["op"], "message", "{e:?}");
        return e;
    }
}

#[test]
fn a_stream_starts_with_retry_and_every_message_has_the_positions_as_its_id() {
    let server = Server::with_config(&config(""));
    let mut s = SseStream::open(server.addr, "/pubsub/events?channel=a&channel=b", "");
    for h in [
        "cache-control: no-store",
        "x-accel-buffering: no",
        "transfer-encoding: chunked",
    ] {
        assert!(s.head.contains(h), "{h} missing: {}", s.head);
    }
    let first = s.next(WAIT).expect("a first block");
    assert_eq!(first.retry, Some(1500), "{first:?}");
    let mut epochs = Vec::new();
    for channel in ["a", "b"] {
        let e = s.next_event(WAIT).expect("a subscribed event");
        assert_eq!(e.event.as_deref(), Some("subscribed"));
        let ack = e.json();
        assert_eq!(
            (ack["op"].as_str(), ack["channel"].as_str()),
            (Some("ack"), Some(channel))
        );
        assert_eq!(ack["offset"], 0);
        epochs.push(ack["epoch"].as_str().unwrap().to_owned());
    }
    let (ea, eb) = (&epochs[0], &epochs[1]);
    publish(&server, "a", json!("one"));
    publish(&server, "b", json!("two"));
    publish(&server, "a", json!("three"));
    let got: Vec<(String, Value)> = (0..3)
        .map(|_| {
            let e = message(&mut s);
            (e.id.clone().unwrap(), e.json())
        })
        .collect();
    assert_eq!(got[0].0, format!("{ea}:1,{eb}:0"));
    assert_eq!(got[1].0, format!("{ea}:1,{eb}:1"));
    assert_eq!(got[2].0, format!("{ea}:2,{eb}:1"));
    assert_eq!(
        got[2].1,
        json!({"op": "message", "channel": "a", "offset": 2, "data": "three"})
    );
}

#[test]
fn a_silent_stream_gets_a_heartbeat_comment_every_interval() {
    let server = Server::with_config(&config("sse_heartbeat = \"400ms\""));
    let mut s = SseStream::open(server.addr, "/pubsub/events?channel=quiet", "");
    s.next(WAIT).expect("retry");
    s.next(WAIT).expect("subscribed");
    let heartbeat = |s: &mut SseStream| {
        let e = s.next(WAIT).expect("a heartbeat");
        assert!(e.comment.is_some() && e.data.is_none(), "{e:?}");
    };
    heartbeat(&mut s);
    // Measured over three intervals, so one late read does not decide.
    let at = Instant::now();
    for _ in 0..3 {
        heartbeat(&mut s);
    }
    let took = at.elapsed();
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_secs(3),
        "three heartbeats took {took:?} (sse_heartbeat = 400ms)"
    );
}

#[test]
fn last_event_id_resumes_every_channel_with_no_gap_and_no_duplicate() {
    let server = Server::with_config(&config("history_size = 100"));
    let path = "/pubsub/events?channel=a&channel=b";
    let mut s = SseStream::open(server.addr, path, "");
    for n in 1..=3 {
        publish(&server, "a", json!(n));
        publish(&server, "b", json!(n));
    }
    let mut last = String::new();
    for _ in 0..6 {
        last = message(&mut s).id.unwrap();
    }
    drop(s);
    for n in 4..=6 {
        publish(&server, "a", json!(n));
        publish(&server, "b", json!(n));
    }
    let mut s = SseStream::open(server.addr, path, &format!("Last-Event-ID: {last}\r\n"));
    s.next(WAIT).expect("retry");
    for channel in ["a", "b"] {
        let e = s.next_event(WAIT).unwrap();
        assert_eq!(e.event.as_deref(), Some("subscribed"), "{e:?}");
        assert_eq!(e.json()["recovered"], true, "{e:?}");
        assert_eq!(e.json()["channel"], channel);
    }
    publish(&server, "a", json!(7));
    publish(&server, "b", json!(7));
    let mut seen: Vec<(String, i64)> = Vec::new();
    for _ in 0..8 {
        let m = message(&mut s).json();
        seen.push((
            m["channel"].as_str().unwrap().into(),
            m["data"].as_i64().unwrap(),
        ));
    }
    for channel in ["a", "b"] {
        let of: Vec<i64> = seen
            .iter()
            .filter(|(c, _)| c == channel)
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(of, [4, 5, 6, 7], "channel {channel}: {seen:?}");
    }
    // The same resume as a query parameter (for a page that kept the id).
    let encoded = last.replace(':', "%3A").replace(',', "%2C");
    let mut q = SseStream::open(server.addr, &format!("{path}&last_event_id={encoded}"), "");
    q.next(WAIT).expect("retry");
    assert_eq!(q.next_event(WAIT).unwrap().json()["recovered"], true);
}

#[test]
fn a_resume_the_history_cannot_serve_is_a_reset_event() {
    let server = Server::with_config(&config("history_size = 2"));
    let mut s = SseStream::open(server.addr, "/pubsub/events?channel=a", "");
    publish(&server, "a", json!(1));
    let id = message(&mut s).id.unwrap();
    drop(s);
    // Once the server has seen the stream go (nothing delivered), the
    // history keeps only the last 2.
    let mut n = 1;
    assert!(eventually(WAIT, || {
        n += 1;
        publish(&server, "a", json!(n))["delivered"] == 0
    }));
    let mut top = 0;
    for _ in 0..3 {
        n += 1;
        top = publish(&server, "a", json!(n))["offset"].as_u64().unwrap();
    }
    let mut s = SseStream::open(
        server.addr,
        "/pubsub/events?channel=a",
        &format!("Last-Event-ID: {id}\r\n"),
    );
    s.next(WAIT).expect("retry");
    let e = s.next_event(WAIT).unwrap();
    assert_eq!(e.event.as_deref(), Some("reset"), "{e:?}");
    let reset = e.json();
    assert_eq!(
        (reset["op"].as_str(), reset["offset"].as_u64()),
        (Some("reset"), Some(top))
    );
    assert_eq!(
        e.id.unwrap(),
        format!("{}:{top}", reset["epoch"].as_str().unwrap())
    );
    // Nothing partial was replayed: the next message is live.
    publish(&server, "a", json!("live"));
    assert_eq!(message(&mut s).json()["data"], "live");
    // An id that names other channels (or none) resets as well.
    let mut s = SseStream::open(
        server.addr,
        "/pubsub/events?channel=a",
        "Last-Event-ID: x\r\n",
    );
    s.next(WAIT).expect("retry");
    assert_eq!(s.next_event(WAIT).unwrap().event.as_deref(), Some("reset"));
}

fn hs256(claims: &Value) -> String {
    test_support::jwt::hs256(b"jwt-secret", claims)
}

#[test]
fn refusals_use_statuses_that_stop_an_event_source() {
    let server = Server::with_config(&config(
        "auth = { jwt_secret = \"jwt-secret\" }\norigins = [\"https://app.example\"]",
    ));
    let token = hs256(&json!({"sub": "ann", "exp": now() + 600, "subscribe": ["news.*"]}));
    let status = |path: &str, headers: &str| SseStream::request(server.addr, path, headers).0;
    // No token, a bad one: 401.
    assert_eq!(status("/pubsub/events?channel=news.a", ""), 401);
    assert_eq!(
        status("/pubsub/events?channel=news.a&access_token=nope", ""),
        401
    );
    // A channel the token does not grant: 403, naming it.
    let (code, refused) = SseStream::request(
        server.addr,
        &format!("/pubsub/events?channel=news.a&channel=secret&access_token={token}"),
        "",
    );
    assert_eq!(code, 403);
    assert!(refused
        .rest()
        .contains("not allowed to subscribe to secret"));
    // Another origin than the route allows: 403.
    let with_token = format!("/pubsub/events?channel=news.a&access_token={token}");
    assert_eq!(status(&with_token, "Origin: https://evil.example\r\n"), 403);
    // No channel at all: 204, nothing to stream.
    assert_eq!(
        status(&format!("/pubsub/events?access_token={token}"), ""),
        204
    );
    // The allowed origin gets the CORS headers that let its page read.
    let s = SseStream::open(
        server.addr,
        &with_token,
        &format!("Authorization: Bearer {token}\r\nOrigin: https://app.example\r\n"),
    );
    assert!(
        s.head
            .contains("access-control-allow-origin: https://app.example")
            && s.head.contains("access-control-allow-credentials: true"),
        "{}",
        s.head
    );
    assert!(server
        .log()
        .contains("refused event stream: forbidden_channel"));
}

#[test]
fn streams_count_against_the_connection_limits() {
    let server = Server::with_config(&format!(
        "[limits]\nmax_connections_per_ip = 1\n{}",
        config("")
    ));
    let mut s = SseStream::open(server.addr, "/pubsub/events?channel=a", "");
    s.next(WAIT).expect("retry");
    let (code, second) = SseStream::request(server.addr, "/pubsub/events?channel=a", "");
    assert_eq!(code, 429);
    assert!(second.head.contains("retry-after: 5"), "{}", second.head);
    let (code, _) =
        test_support::serve::upgrade_raw(server.addr, &server.addr.to_string(), "/pubsub", "");
    assert_eq!(code, 429, "a WebSocket while the stream holds the slot");
    drop(s);
    assert!(eventually(WAIT, || SseStream::request(
        server.addr,
        "/pubsub/events?channel=a",
        ""
    )
    .0 == 200));
}

#[test]
fn a_reader_that_stops_reading_is_cut_off() {
    let server = Server::with_config(&format!(
        "[limits]\nsend_queue = 16\nmax_queued_bytes_per_connection = \"2M\"\n{}",
        config("")
    ));
    let mut s = SseStream::open(server.addr, "/pubsub/events?channel=flood", "");
    // The reader takes nothing; the server's queue for it fills.
    let big = "x".repeat(32 << 10);
    let mut client = std::net::TcpStream::connect(server.addr).unwrap();
    for _ in 0..400 {
        let body = json!({"channel": "flood", "data": big}).to_string();
        write!(
            client,
            "POST /api/publish HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
            server.addr,
            body.len()
        )
        .unwrap();
    }
    let slow = "tether_slow_consumer_closes_total{route=\"/pubsub\",kind=\"pubsub\"}";
    assert!(
        eventually(WAIT, || server.metric(slow) >= 1),
        "the stream was not cut off; log:\n{}",
        server.log()
    );
    // What was sent before the cut is still readable, then the end.
    assert!(s.closes_within(WAIT), "the stream did not end");
    assert!(
        server.log().contains("reason=slow consumer"),
        "{}",
        server.log()
    );
}

#[test]
fn a_stream_ends_at_its_max_lifetime() {
    let server = Server::with_config(&config("sse_max_lifetime = \"1s\""));
    let started = Instant::now();
    let mut s = SseStream::open(server.addr, "/pubsub/events?channel=a", "");
    assert!(s.ends_within(WAIT), "not ended by sse_max_lifetime");
    let lived = started.elapsed();
    assert!(
        lived >= Duration::from_millis(850) && lived < Duration::from_secs(5),
        "{lived:?}"
    );
}

#[test]
fn a_stream_ends_at_shutdown() {
    let mut server = Server::with_config(&config(""));
    let mut s = SseStream::open(server.addr, "/pubsub/events?channel=a", "");
    s.next(WAIT).expect("retry");
    server.terminate();
    assert!(
        s.ends_within(Duration::from_secs(5)),
        "not ended by the shutdown"
    );
    assert!(server.wait_exit(Duration::from_secs(5)).is_some());
}

#[test]
fn bench_sse_mode_measures_both_kinds_of_readers_in_one_run() {
    let server = Server::with_config(
        "[[route]]\npath = \"/pubsub\"\nkind = \"pubsub\"\nclient_publish = [\"bench\"]\nsse = true\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["bench", "--sse", &server.ws_url("/pubsub")])
        .args([
            "-c", "4", "-t", "1s", "--rate", "50", "--json", "--log", "warn",
        ])
        .output()
        .expect("run tether bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tether bench failed: {stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("a JSON summary");
    for phase in ["websocket", "sse"] {
        let s = &v[phase];
        assert_eq!(s["connected"], 4, "{phase}: {s}");
        assert_eq!(s["errors"], 0, "{phase}: {s}");
        let (sent, got) = (
            s["messages_sent"].as_u64().unwrap(),
            s["messages_received"].as_u64().unwrap(),
        );
        assert!(sent > 0, "{phase}: {s}");
        // Every reader gets every message published in the window, but
        // the last few may still be on their way when it closes.
        assert!(
            got <= 4 * sent && got + 4 * 10 >= 4 * sent,
            "{phase}: {got} of 4 x {sent}"
        );
    }
    assert!(v["ratio"].as_f64().unwrap() > 0.0, "{v}");
}
