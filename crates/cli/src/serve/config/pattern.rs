//! Route paths: literal segments and `{name}` captures.

/// A route path: literal segments and `{name}` captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<Segment>,
    prefix: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Capture(String),
}

impl PathPattern {
    /// Parse `/a/{b}`; `prefix` patterns also match anything below.
    pub fn parse(path: &str, prefix: bool) -> Result<PathPattern, String> {
        if !path.starts_with('/') {
            return Err(format!("`path` must start with `/` (got `{path}`)"));
        }
        let mut segments = Vec::new();
        for seg in path.split('/').skip(1).filter(|s| !s.is_empty()) {
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                if name.is_empty() || prefix {
                    return Err(format!(
                        "`path` `{path}`: captures need a name and are not allowed in static routes"
                    ));
                }
                segments.push(Segment::Capture(name.to_owned()));
            } else if seg.contains(['{', '}']) {
                return Err(format!("`path` `{path}`: `{seg}` is not `{{name}}`"));
            } else {
                segments.push(Segment::Literal(seg.to_owned()));
            }
        }
        Ok(PathPattern { segments, prefix })
    }

    /// Match a request path; returns the captured values in order, and for
    /// prefix patterns the remainder after the prefix.
    pub fn matches<'a>(&self, path: &'a str) -> Option<(Vec<&'a str>, &'a str)> {
        let mut rest = path.strip_prefix('/')?;
        let mut caps = Vec::new();
        for seg in &self.segments {
            let (head, tail) = rest.split_once('/').unwrap_or((rest, ""));
            match seg {
                Segment::Literal(l) if l == head => {}
                Segment::Capture(_) if !head.is_empty() => caps.push(head),
                _ => return None,
            }
            rest = tail;
        }
        if self.prefix || rest.is_empty() {
            Some((caps, rest))
        } else {
            None
        }
    }
}
