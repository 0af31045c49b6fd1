use super::*;

fn settings() -> Settings {
    Settings {
        retry: Duration::from_millis(1500),
        heartbeat: Duration::from_secs(3600),
        max_lifetime: None,
    }
}

/// Everything the stream has now, as text.
fn drain(events: &mut Events) -> String {
    let mut out = String::new();
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    while let Poll::Ready(Ok(c)) = events.poll_chunk(&mut cx) {
        out.push_str(std::str::from_utf8(&c.bytes).unwrap());
    }
    out
}

fn publish(hub: &Arc<Hub>, channel: &str, data: i64) {
    let engine = super::super::engine::Memory(hub.clone());
    super::super::pubsub::publish(&engine, channel, &serde_json::json!(data), None);
}

/// The ids of the message events in `text`.
fn ids(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|e| e.contains(r#""op":"message""#))
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("id: ")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn last_event_ids_are_read_per_channel() {
    assert_eq!(Resume::parse(None, 1), Resume::Fresh);
    assert_eq!(Resume::parse(Some(" "), 1), Resume::Fresh);
    assert_eq!(
        Resume::parse(Some("ab:3,cd:0"), 2),
        Resume::At(vec![("ab".into(), 3), ("cd".into(), 0)])
    );
    assert_eq!(Resume::parse(Some("ab:3"), 2), Resume::Unreadable);
    assert_eq!(Resume::parse(Some("ab:x"), 1), Resume::Unreadable);
    assert_eq!(Resume::parse(Some(":3"), 1), Resume::Unreadable);
}

#[tokio::test]
async fn retry_first_then_positions_then_messages_with_ids() {
    let hub = Arc::new(Hub::new(16));
    let chans = ["a".to_owned(), "b".to_owned()];
    let mut ev = Events::open(&hub, None, &chans, &Resume::Fresh, &settings());
    publish(&hub, "a", 1);
    publish(&hub, "b", 2);
    publish(&hub, "a", 3);
    let text = drain(&mut ev);
    assert!(text.starts_with("retry: 1500\n\n"), "{text}");
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert!(events[1].starts_with("event: subscribed\nid: "), "{text}");
    let ea = &*ev.channels[0].epoch;
    let eb = &*ev.channels[1].epoch;
    assert_eq!(
        ids(&text),
        [
            format!("{ea}:1,{eb}:0"),
            format!("{ea}:1,{eb}:1"),
            format!("{ea}:2,{eb}:1")
        ]
    );
    assert!(
        text.contains("data: {\"op\":\"message\",\"channel\":\"a\",\"offset\":2,\"data\":3}\n\n")
    );
}

#[tokio::test]
async fn a_last_event_id_resumes_every_channel_without_gap_or_repeat() {
    let hub = Arc::new(Hub::new(16).retaining(super::super::hub::Retention {
        history_size: 10,
        ..Default::default()
    }));
    let chans = ["a".to_owned(), "b".to_owned()];
    let mut first = Events::open(&hub, None, &chans, &Resume::Fresh, &settings());
    publish(&hub, "a", 1);
    publish(&hub, "b", 1);
    let text = drain(&mut first);
    let last = ids(&text).pop().unwrap();
    drop(first);
    // Missed while away.
    publish(&hub, "a", 2);
    publish(&hub, "b", 2);
    publish(&hub, "a", 3);
    let resume = Resume::parse(Some(&last), 2);
    let mut again = Events::open(&hub, None, &chans, &resume, &settings());
    publish(&hub, "b", 3);
    let text = drain(&mut again);
    let got: Vec<(String, i64)> = text
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter(|v| v["op"] == "message")
        .map(|v| {
            (
                v["channel"].as_str().unwrap().to_owned(),
                v["data"].as_i64().unwrap(),
            )
        })
        .collect();
    let pairs = |v: &[(&str, i64)]| {
        v.iter()
            .map(|(c, n)| (c.to_string(), *n))
            .collect::<Vec<_>>()
    };
    // In order per channel (a resumed channel's replay comes whole).
    assert_eq!(got, pairs(&[("a", 2), ("a", 3), ("b", 2), ("b", 3)]));
    let (ea, eb) = (&*again.channels[0].epoch, &*again.channels[1].epoch);
    assert_eq!(
        ids(&text),
        [
            format!("{ea}:2,{eb}:1"),
            format!("{ea}:3,{eb}:1"),
            format!("{ea}:3,{eb}:2"),
            format!("{ea}:3,{eb}:3")
        ]
    );
    assert_eq!(text.matches("\"recovered\":true").count(), 2, "{text}");
    assert!(!text.contains("event: reset"), "{text}");
}

#[tokio::test]
async fn an_impossible_resume_is_a_reset_event() {
    let hub = Arc::new(Hub::new(16));
    let chans = ["a".to_owned()];
    let mut ev = Events::open(
        &hub,
        None,
        &chans,
        &Resume::parse(Some("0123456789abcdef:7"), 1),
        &settings(),
    );
    let text = drain(&mut ev);
    assert!(text.contains("event: reset\n"), "{text}");
    assert!(text.contains(r#""op":"reset","channel":"a""#), "{text}");
    let mut garbled = Events::open(
        &hub,
        None,
        &chans,
        &Resume::parse(Some("what"), 1),
        &settings(),
    );
    assert!(drain(&mut garbled).contains("event: reset\n"));
}

#[tokio::test(start_paused = true)]
async fn silence_gets_a_heartbeat_comment() {
    let hub = Arc::new(Hub::new(16));
    let s = Settings {
        heartbeat: Duration::from_secs(15),
        ..settings()
    };
    let mut ev = Events::open(&hub, None, &["a".to_owned()], &Resume::Fresh, &s);
    drain(&mut ev);
    tokio::time::advance(Duration::from_secs(14)).await;
    assert_eq!(drain(&mut ev), "");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(drain(&mut ev), ": heartbeat\n\n");
    // A message: the next heartbeat is a whole period after it.
    tokio::time::advance(Duration::from_secs(5)).await;
    publish(&hub, "a", 1);
    assert!(drain(&mut ev).starts_with("id: "));
    tokio::time::advance(Duration::from_secs(14)).await;
    assert_eq!(drain(&mut ev), "");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(drain(&mut ev), ": heartbeat\n\n");
}

#[tokio::test]
async fn a_reader_that_falls_behind_is_ended() {
    let hub = Arc::new(Hub::new(4));
    let mut ev = Events::open(&hub, None, &["a".to_owned()], &Resume::Fresh, &settings());
    for n in 0..10 {
        publish(&hub, "a", n);
    }
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(matches!(
        ev.poll_chunk(&mut cx),
        Poll::Ready(Err(End::SlowConsumer))
    ));
    assert!(ev.poll_stalled(&mut cx).is_ready());
}
