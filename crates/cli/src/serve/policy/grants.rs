//! What an admitted client may do on a pub/sub route: the channels it may
//! subscribe and publish to.

/// What an authenticated client may do on a pub/sub route.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Channel patterns it may subscribe to (`None` = all).
    pub subscribe: Option<Vec<String>>,
    /// Channel patterns it may publish to (`None` = all).
    pub publish: Option<Vec<String>>,
    /// Who (the JWT `sub`), for logs.
    pub subject: Option<String>,
}

impl Grants {
    /// Full access (an opaque token).
    pub fn all() -> Grants {
        Grants::default()
    }

    /// A client without credentials: subscribe anywhere, publish nowhere
    /// (until [`Grants::with_client_publish`]).
    pub fn anonymous() -> Grants {
        Grants {
            publish: Some(Vec::new()),
            ..Grants::default()
        }
    }

    /// Add the channels a route lets every client publish to
    /// (`client_publish`).
    pub fn with_client_publish(mut self, patterns: &[String]) -> Grants {
        if let Some(p) = &mut self.publish {
            p.extend_from_slice(patterns);
        }
        self
    }

    /// May subscribe to `channel`?
    pub fn may_subscribe(&self, channel: &str) -> bool {
        allowed(&self.subscribe, channel)
    }

    /// May publish to `channel`?
    pub fn may_publish(&self, channel: &str) -> bool {
        allowed(&self.publish, channel)
    }
}

/// `None` allows all; patterns are exact names or `prefix*`.
///
/// A prefix is matched byte for byte, with no notion of a separator:
/// `tenant1*` matches `tenant10` as well as `tenant1.news`. To stay within
/// one namespace, end the prefix with the separator the channel names use
/// (`tenant1.*`). `*` alone matches every channel.
fn allowed(list: &Option<Vec<String>>, channel: &str) -> bool {
    match list {
        None => true,
        Some(l) => l.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => channel.starts_with(prefix),
            None => p == channel,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_patterns() {
        let g = Grants {
            subscribe: Some(vec!["news.*".into(), "chat".into()]),
            publish: Some(vec![]),
            subject: None,
        };
        assert!(g.may_subscribe("news.sport"));
        assert!(g.may_subscribe("chat"));
        assert!(!g.may_subscribe("chat2"));
        assert!(!g.may_publish("chat"));
    }

    #[test]
    fn a_prefix_pattern_is_a_plain_prefix_so_end_it_with_a_separator() {
        let g = Grants {
            subscribe: Some(vec!["tenant1*".into()]),
            publish: Some(vec!["tenant1.*".into()]),
            subject: None,
        };
        // Documented: `*` does not stop at a name boundary.
        assert!(g.may_subscribe("tenant10"));
        assert!(g.may_subscribe("tenant1.news"));
        // With the separator in the pattern, another tenant is out.
        assert!(g.may_publish("tenant1.news"));
        assert!(!g.may_publish("tenant10.news"));
        assert!(!g.may_publish("tenant1"));
    }

    #[test]
    fn anonymous_clients_publish_only_where_the_route_allows() {
        let anon = Grants::anonymous();
        assert!(anon.may_subscribe("ticker") && !anon.may_publish("ticker"));
        let chat = Grants::anonymous().with_client_publish(&["chat.*".into()]);
        assert!(chat.may_publish("chat.lobby") && !chat.may_publish("ticker"));
        let all = Grants::anonymous().with_client_publish(&["*".into()]);
        assert!(all.may_publish("anything"));
        assert!(Grants::all().with_client_publish(&[]).may_publish("x"));
    }
}
