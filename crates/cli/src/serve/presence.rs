//! Presence join/leave events of pub/sub channels (`"presence_events":
//! true` on subscribe, on routes with `presence = true`).
//!
//! Each channel has an internal feed group (its name starts with a control
//! character, so no client can subscribe to it, and it keeps no history):
//! every subscribe and unsubscribe of the channel, and every subscriber's
//! disconnect, is announced there as `{"op":"join"|"leave","channel":…,
//! "client":…,"user":…}`, and the subscribers that asked for events are
//! members of it. A subscriber joins the feed after its own join is
//! announced and leaves it before its leave is, so it never hears itself.

use super::hub::{internal, Member};
use serde_json::Value;

/// The internal group carrying `channel`'s events.
fn feed(channel: &str) -> String {
    format!("\u{1}presence:{channel}")
}

/// `{"op":OP,"channel":…,"client":…,"user":…}` about `member`.
fn event(op: &str, channel: &str, member: &Member) -> tether::Message {
    let user = member.user().map_or(Value::Null, |u| Value::from(&**u));
    tether::Message::text(format!(
        r#"{{"op":"{op}","channel":{},"client":"{}","user":{user}}}"#,
        Value::from(channel),
        member.id,
    ))
}

/// Tell `channel`'s listeners that `member` `op` (join or leave). Nothing
/// is made or kept when nobody listens.
fn announce(member: &Member, channel: &str, op: &str) {
    member
        .hub()
        .publish_at(&feed(channel), |_| event(op, channel, member));
}

/// `member` has just subscribed to `channel` (`fresh`: it was not
/// subscribed before); with `listen`, it wants the channel's events.
pub fn subscribed(member: &mut Member, channel: &str, fresh: bool, listen: bool) {
    if !member.hub().retention().presence {
        return;
    }
    if fresh {
        announce(member, channel, "join");
    }
    if listen {
        member.join(&feed(channel));
    }
}

/// `member` has just unsubscribed from `channel`.
pub fn unsubscribed(member: &mut Member, channel: &str) {
    if !member.hub().retention().presence {
        return;
    }
    member.leave(&feed(channel));
    announce(member, channel, "leave");
}

/// `member`'s connection is over: it leaves every channel, announced.
pub fn departed(member: &mut Member) {
    if !member.hub().retention().presence {
        return;
    }
    let channels: Vec<String> = member
        .groups()
        .filter(|g| !internal(g))
        .map(str::to_owned)
        .collect();
    for channel in channels {
        member.leave(&channel);
        unsubscribed(member, &channel);
    }
}

/// The channels `member` is subscribed to (its feeds not counted).
pub fn subscriptions(member: &Member) -> usize {
    member.groups().filter(|g| !internal(g)).count()
}
