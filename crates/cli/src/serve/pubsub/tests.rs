use super::super::engine::Memory;
use super::super::hub::{Next, Retention};
use super::*;

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
