use super::super::engine::{Memory, Recovery};
use super::super::hub::{Next, Retention};
use super::*;

/// A request on a connection with nothing pending.
fn handle(m: &mut Member, rights: &Rights<'_>, msg: &Message) -> Work {
    super::handle(m, rights, msg, false)
}

/// The next message in the member's own queue, as JSON.
fn reply(m: &mut Member) -> Value {
    let Some(Next::Message(msg)) = m.try_next() else {
        panic!("expected a queued reply");
    };
    serde_json::from_str(msg.as_text().unwrap()).unwrap()
}

#[test]
fn subscribe_publish_unsubscribe() {
    let hub = Arc::new(Hub::new(8));
    let engine: Arc<dyn Engine> = Arc::new(Memory(hub.clone()));
    let mut m = hub.member();
    let grants = Grants::all();
    let all = Rights {
        grants: &grants,
        max_subscriptions: 8,
        max_reply: 1 << 20,
        engine: &engine,
    };
    handle(
        &mut m,
        &all,
        &Message::text(r#"{"op":"subscribe","channel":"news","id":1}"#),
    );
    let ack = reply(&mut m);
    let epoch = ack["epoch"].as_str().expect("an epoch").to_owned();
    assert_eq!(
        ack,
        json!({"op":"ack","channel":"news","id":1,"epoch":epoch,"offset":0})
    );
    handle(
        &mut m,
        &all,
        &Message::text(r#"{"op":"publish","channel":"news","data":[1],"id":2}"#),
    );
    assert_eq!(
        reply(&mut m),
        json!({"op":"message","channel":"news","offset":1,"data":[1]})
    );
    assert_eq!(
        reply(&mut m),
        json!({"op":"ack","channel":"news","id":2,"delivered":1,"epoch":epoch,"offset":1})
    );
    handle(
        &mut m,
        &all,
        &Message::text(r#"{"op":"unsubscribe","channel":"news"}"#),
    );
    assert_eq!(reply(&mut m)["op"], "ack");
    handle(
        &mut m,
        &all,
        &Message::text(r#"{"op":"unsubscribe","channel":"news","id":"x"}"#),
    );
    assert_eq!(
        reply(&mut m),
        json!({"op":"error","id":"x","error":"not subscribed to news"})
    );
}

#[test]
fn bad_requests_and_denied_channels_get_errors() {
    let hub = Arc::new(Hub::new(8));
    let mut m = hub.member();
    let grants = Grants {
        subscribe: Some(vec!["public.*".into()]),
        publish: Some(vec![]),
        subject: None,
    };
    let engine: Arc<dyn Engine> = Arc::new(Memory(hub.clone()));
    let limited = Rights {
        grants: &grants,
        max_subscriptions: 8,
        max_reply: 1 << 20,
        engine: &engine,
    };
    handle(&mut m, &limited, &Message::text("nope"));
    assert_eq!(reply(&mut m)["op"], "error");
    handle(
        &mut m,
        &limited,
        &Message::text(r#"{"op":"subscribe","channel":"private"}"#),
    );
    assert_eq!(
        reply(&mut m)["error"],
        "not allowed to subscribe to private"
    );
    handle(
        &mut m,
        &limited,
        &Message::text(r#"{"op":"publish","channel":"public.a","data":1}"#),
    );
    assert_eq!(reply(&mut m)["error"], "not allowed to publish to public.a");
    handle(
        &mut m,
        &limited,
        &Message::text(r#"{"op":"subscribe","channel":""}"#),
    );
    assert_eq!(reply(&mut m)["error"], "invalid channel name");
}

#[test]
fn history_and_presence_answer_where_the_route_keeps_them() {
    let hub = Arc::new(Hub::new(8).retaining(Retention {
        history_size: 2,
        history_ttl: None,
        presence: true,
    }));
    let engine: Arc<dyn Engine> = Arc::new(Memory(hub.clone()));
    let grants = Grants::all();
    let rights = Rights {
        grants: &grants,
        max_subscriptions: 8,
        max_reply: 1 << 20,
        engine: &engine,
    };
    let mut m = hub.member_as(Some("ann".into()));
    for n in 1..=3 {
        let _ = publish(&*engine, "news", &json!(n), None);
    }
    handle(
        &mut m,
        &rights,
        &Message::text(r#"{"op":"history","channel":"news","id":7}"#),
    );
    let h = reply(&mut m);
    assert_eq!(h["op"], "history");
    assert_eq!(h["id"], 7);
    assert_eq!(h["offset"], 3);
    let data: Vec<_> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["offset"].clone(), m["data"].clone()))
        .collect();
    assert_eq!(data, [(json!(2), json!(2)), (json!(3), json!(3))]);
    handle(
        &mut m,
        &rights,
        &Message::text(r#"{"op":"subscribe","channel":"news"}"#),
    );
    reply(&mut m);
    handle(
        &mut m,
        &rights,
        &Message::text(r#"{"op":"presence","channel":"news"}"#),
    );
    assert_eq!(
        reply(&mut m),
        json!({"op":"presence","channel":"news","clients":[{"client":m.id.to_string(),"user":"ann"}]})
    );
    // A route without them says which setting turns them on.
    let plain = Arc::new(Hub::new(8));
    let mut p = plain.member();
    for op in ["history", "presence"] {
        handle(
            &mut p,
            &rights,
            &Message::text(format!(r#"{{"op":"{op}","channel":"news"}}"#)),
        );
        let e = reply(&mut p);
        assert!(e["error"].as_str().unwrap().contains("on the route"), "{e}");
    }
}

/// Everything queued for `m`, as JSON.
fn drain(m: &mut Member) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(Next::Message(msg)) = m.try_next() {
        out.push(serde_json::from_str(msg.as_text().unwrap()).unwrap());
    }
    out
}

#[test]
fn presence_events_reach_the_subscribers_that_asked_for_them() {
    let hub = Arc::new(Hub::new(64).retaining(Retention {
        history_size: 10,
        history_ttl: None,
        presence: true,
    }));
    let engine: Arc<dyn Engine> = Arc::new(Memory(hub.clone()));
    let grants = Grants::all();
    let rights = Rights {
        grants: &grants,
        max_subscriptions: 1,
        max_reply: 1 << 20,
        engine: &engine,
    };
    let sub = |m: &mut Member, text: &str| {
        handle(m, &rights, &Message::text(text));
        drain(m)
    };
    let mut watcher = hub.member_as(Some("ann".into()));
    let mut plain = hub.member();
    let got = sub(
        &mut watcher,
        r#"{"op":"subscribe","channel":"news","presence_events":true}"#,
    );
    // Its own join is not reported to it; the feed takes no extra slot
    // of `limits.max_subscriptions` (1 here).
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["op"], "ack");
    assert_eq!(
        sub(&mut plain, r#"{"op":"subscribe","channel":"news"}"#)[0]["op"],
        "ack"
    );
    let joined = json!({"op":"join","channel":"news","client":plain.id.to_string(),"user":null});
    assert_eq!(drain(&mut watcher), [joined]);
    // A subscribe that changes nothing announces nothing.
    sub(&mut plain, r#"{"op":"subscribe","channel":"news"}"#);
    assert!(drain(&mut watcher).is_empty());
    // Messages and events keep their order; events have no offset and
    // are not kept in the channel's history.
    let _ = publish(&*engine, "news", &json!("hello"), None);
    sub(&mut plain, r#"{"op":"unsubscribe","channel":"news"}"#);
    let left = json!({"op":"leave","channel":"news","client":plain.id.to_string(),"user":null});
    let got = drain(&mut watcher);
    assert_eq!(got[0]["op"], "message");
    assert_eq!(got[1], left);
    let Op::Done(Ok(h)) = engine.history("news", 10, 1 << 20) else {
        panic!("the in-memory engine answers at once");
    };
    assert_eq!(h.messages.len(), 1);
    // A subscriber that did not ask hears no events.
    let mut other = hub.member_as(Some("bob".into()));
    sub(&mut other, r#"{"op":"subscribe","channel":"news"}"#);
    assert_eq!(
        drain(&mut watcher),
        [json!({"op":"join","channel":"news","client":other.id.to_string(),"user":"bob"})]
    );
    let was = watcher.id.to_string();
    presence::departed(&mut watcher);
    assert_eq!(
        drain(&mut other),
        Vec::<Value>::new(),
        "no events for a subscriber that did not ask"
    );
    assert!(hub.presence("news").iter().all(|c| c.0.to_string() != was));
    // A disconnect is announced to those listening.
    let mut listener = hub.member();
    sub(
        &mut listener,
        r#"{"op":"subscribe","channel":"news","presence_events":true}"#,
    );
    presence::departed(&mut other);
    assert_eq!(
        drain(&mut listener),
        [json!({"op":"leave","channel":"news","client":other.id.to_string(),"user":"bob"})]
    );
    // The feed is not a channel a client can reach.
    let got = sub(
        &mut plain,
        "{\"op\":\"unsubscribe\",\"channel\":\"\\u0001presence:news\"}",
    );
    assert_eq!(got[0]["op"], "error", "{got:?}");
    assert!(listener.is_in("\u{1}presence:news"));
}

#[test]
fn presence_events_need_a_route_with_presence() {
    let hub = Arc::new(Hub::new(8));
    let engine: Arc<dyn Engine> = Arc::new(Memory(hub.clone()));
    let grants = Grants::all();
    let rights = Rights {
        grants: &grants,
        max_subscriptions: 8,
        max_reply: 1 << 20,
        engine: &engine,
    };
    let mut m = hub.member();
    handle(
        &mut m,
        &rights,
        &Message::text(r#"{"op":"subscribe","channel":"news","presence_events":true}"#),
    );
    let e = reply(&mut m);
    assert!(
        e["error"].as_str().unwrap().contains("`presence = true`"),
        "{e}"
    );
    assert!(!m.is_in("news"));
}

/// A shared engine whose publishes complete only when the test says so
/// (in any order), and which records how many had completed when each
/// subscribe reached it.
#[derive(Debug, Default)]
struct Gated {
    gates: std::sync::Mutex<Vec<tokio::sync::oneshot::Sender<()>>>,
    finished: Arc<std::sync::atomic::AtomicUsize>,
    subscribed_after: std::sync::Mutex<Vec<usize>>,
}

impl Gated {
    fn started(&self) -> usize {
        self.gates.lock().unwrap().len()
    }

    /// Let publish `i` (0-based, in the order they reached the engine) complete.
    fn release(&self, i: usize) {
        let (tx, _) = tokio::sync::oneshot::channel();
        let gate = std::mem::replace(&mut self.gates.lock().unwrap()[i], tx);
        let _ = gate.send(());
    }
}

impl Engine for Gated {
    fn name(&self) -> &'static str {
        "gated"
    }
    fn local(&self) -> bool {
        false
    }
    fn publish(
        &self,
        _channel: &str,
        _data: &str,
        _key: Option<&str>,
    ) -> Op<Result<Published, EngineError>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut gates = self.gates.lock().unwrap();
        gates.push(tx);
        let offset = gates.len() as u64;
        let finished = self.finished.clone();
        Op::wait(async move {
            let _ = rx.await;
            finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(Published {
                delivered: 1,
                position: Some(Position {
                    epoch: "e".into(),
                    offset,
                }),
                duplicate: false,
            })
        })
    }
    fn history(&self, _: &str, _: usize, _: usize) -> Op<Result<History, EngineError>> {
        Op::Done(Err(EngineError::Failed("no history here".into())))
    }
    fn presence(&self, _: &str) -> Op<Result<Vec<Present>, EngineError>> {
        Op::Done(Ok(Vec::new()))
    }
    fn subscribe(&self, _: &str) -> Op<Result<Position, EngineError>> {
        let done = self.finished.load(std::sync::atomic::Ordering::SeqCst);
        self.subscribed_after.lock().unwrap().push(done);
        Op::Done(Ok(Position {
            epoch: "e".into(),
            offset: 0,
        }))
    }
    fn unsubscribe(&self, _: &str) {}
    fn recover(
        &self,
        channel: &str,
        _: &Position,
        _: &Position,
    ) -> Op<Result<Recovery, EngineError>> {
        Op::Done(Err(EngineError::Failed(format!("no history of {channel}"))))
    }
    fn presence_join(&self, _: &str, _: u64, _: Option<&str>) {}
    fn presence_leave(&self, _: &str, _: u64) {}
    fn healthy(&self) -> bool {
        true
    }
    fn metrics(&self) -> Option<&super::super::cluster::EngineMetrics> {
        None
    }
}

/// `tether serve`'s pub/sub loop on one end of a pipe over `engine`, a
/// client on the other.
fn serve_pipe(
    engine: Arc<dyn Engine>,
) -> (
    tokio::task::JoinHandle<()>,
    tether::WebSocket<tokio::io::DuplexStream>,
) {
    let (a, b) = tokio::io::duplex(64 << 10);
    let config = tether::WebSocketConfig::default();
    let mut server =
        tether::WebSocket::from_raw(a, tether::proto::Role::Server, config.clone(), &[]);
    let client = tether::WebSocket::from_raw(b, tether::proto::Role::Client, config, &[]);
    let task = tokio::spawn(async move {
        let hub = Arc::new(Hub::new(64));
        let grants = Grants::all();
        let rights = Rights {
            grants: &grants,
            max_subscriptions: 8,
            max_reply: 1 << 20,
            engine: &engine,
        };
        let (_stop, mut shutdown) = tokio::sync::watch::channel(false);
        let metrics = super::super::metrics::RouteMetrics::default();
        run(&mut server, &hub, &rights, &mut shutdown, &metrics).await;
    });
    (task, client)
}

async fn next_json(client: &mut tether::WebSocket<tokio::io::DuplexStream>) -> Value {
    use futures_util::StreamExt;
    let m = tokio::time::timeout(std::time::Duration::from_secs(5), client.next())
        .await
        .expect("a reply within 5 s")
        .expect("open")
        .expect("no error");
    serde_json::from_str(m.as_text().unwrap()).unwrap()
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn publishes_wait_on_the_engine_together_and_are_answered_in_order() {
    let gated = Arc::new(Gated::default());
    let (server, mut client) = serve_pipe(gated.clone());
    for id in 1..=3 {
        let m = json!({"op": "publish", "channel": "news", "data": id, "id": id});
        client.send(Message::text(m.to_string())).await.unwrap();
    }
    // A bad request behind them is answered behind them too.
    client.send(Message::text("{")).await.unwrap();
    until("all three publishes reach the engine", || {
        gated.started() == 3
    })
    .await;
    // Completed last to first: the answers still come first to last.
    for i in (0..3).rev() {
        gated.release(i);
    }
    for id in 1..=3 {
        let r = next_json(&mut client).await;
        assert_eq!(
            r,
            json!({"op":"ack","channel":"news","id":id,"delivered":1,"epoch":"e","offset":id})
        );
    }
    assert_eq!(next_json(&mut client).await["op"], "error");
    client.close(None).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_subscribe_waits_for_the_publishes_before_it() {
    let gated = Arc::new(Gated::default());
    let (server, mut client) = serve_pipe(gated.clone());
    for m in [
        json!({"op": "publish", "channel": "a", "data": 1, "id": 1}),
        json!({"op": "publish", "channel": "a", "data": 2, "id": 2}),
        json!({"op": "subscribe", "channel": "a", "id": 3}),
        json!({"op": "publish", "channel": "a", "data": 4, "id": 4}),
    ] {
        client.send(Message::text(m.to_string())).await.unwrap();
    }
    until("two publishes reach the engine", || gated.started() == 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(gated.started(), 2, "nothing after the subscribe started");
    assert!(gated.subscribed_after.lock().unwrap().is_empty());
    gated.release(1);
    gated.release(0);
    for id in 1..=3 {
        assert_eq!(next_json(&mut client).await["id"], id);
    }
    assert_eq!(*gated.subscribed_after.lock().unwrap(), vec![2]);
    until("the publish after the subscribe starts", || {
        gated.started() == 3
    })
    .await;
    gated.release(2);
    assert_eq!(next_json(&mut client).await["id"], 4);
    client.close(None).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_connection_waits_on_at_most_in_flight_publishes() {
    use super::super::session::IN_FLIGHT;
    let gated = Arc::new(Gated::default());
    let (server, mut client) = serve_pipe(gated.clone());
    for id in 0..IN_FLIGHT + 5 {
        let m = json!({"op": "publish", "channel": "a", "data": id, "id": id});
        client.send(Message::text(m.to_string())).await.unwrap();
    }
    until("a full window reaches the engine", || {
        gated.started() == IN_FLIGHT
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(
        gated.started(),
        IN_FLIGHT,
        "no more than the window at once"
    );
    gated.release(0);
    assert_eq!(next_json(&mut client).await["id"], 0);
    until("one more starts as one completes", || {
        gated.started() == IN_FLIGHT + 1
    })
    .await;
    server.abort();
}
