//! What the soak reads about the server from outside: its memory, open
//! descriptors and child processes (`/proc`), its TCP connections
//! (`/proc/net/tcp`), and its `/metrics` counters (one plain HTTP request).

use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Open file descriptors of `pid` (entries of `/proc/PID/fd`).
pub fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Processes whose parent is `pid` (from every `/proc/N/stat`).
pub fn child_count(pid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| parent_of(stat) == Some(pid))
        .count()
}

/// The parent pid in a `/proc/N/stat` line (the field after the state,
/// which follows the command name's closing parenthesis).
fn parent_of(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// TCP sockets whose local port is `port`, in any state but LISTEN and
/// TIME_WAIT: the server's side of connections that are still open or
/// still closing (a socket stuck in CLOSE_WAIT counts).
pub fn server_sockets(port: u16) -> usize {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .map(|table| count_sockets(&table, port))
        .sum()
}

/// [`server_sockets`] over one table's text.
fn count_sockets(table: &str, port: u16) -> usize {
    const LISTEN: &str = "0A";
    const TIME_WAIT: &str = "06";
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let mut f = line.split_whitespace();
            let local = f.nth(1).unwrap_or("");
            let state = f.nth(1).unwrap_or("");
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            local_port == Some(port) && state != LISTEN && state != TIME_WAIT
        })
        .count()
}

/// One HTTP/1.1 request with `Connection: close`; returns the status and
/// the body (everything after the head). Bounded by `limit` in all.
pub async fn http_request(
    authority: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    limit: Duration,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let exchange = async {
        let mut tcp = TcpStream::connect(authority).await?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(body).await?;
        let mut response = Vec::new();
        tcp.read_to_end(&mut response).await?;
        anyhow::Ok(response)
    };
    let response = tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("{method} {path}: no answer within {limit:?}"))??;
    let status = response
        .split(|&b| b == b' ')
        .nth(1)
        .and_then(|s| std::str::from_utf8(s).ok()?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("{method} {path}: not an HTTP response"))?;
    let body_at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |p| p + 4);
    Ok((status, response[body_at..].to_vec()))
}

/// The server's `/metrics`, as series (name with labels) to value.
pub async fn metrics(authority: &str, path: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let (status, body) =
        http_request(authority, "GET", path, &[], b"", Duration::from_secs(10)).await?;
    anyhow::ensure!(status == 200, "GET {path} answered {status}");
    Ok(parse_metrics(&String::from_utf8_lossy(&body)))
}

/// Prometheus text to series -> value (comments skipped).
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Values of `name{label="X"}` series by X (e.g. closes by code).
pub fn by_label(m: &BTreeMap<String, f64>, name: &str, label: &str) -> BTreeMap<String, u64> {
    let prefix = format!("{name}{{{label}=\"");
    m.iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(&prefix)?;
            let (value, _) = rest.split_once('"')?;
            Some((value.to_owned(), *v as u64))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_ports_open_and_closing_sockets_not_listeners_or_time_wait() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue\n\
            0: 0100007F:1F90 00000000:0000 0A 00000000:00000000\n\
            1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000\n\
            2: 0100007F:1F90 0100007F:9C41 08 00000000:00000000\n\
            3: 0100007F:1F90 0100007F:9C42 06 00000000:00000000\n\
            4: 0100007F:9C40 0100007F:1F90 01 00000000:00000000\n";
        // Established and CLOSE_WAIT on port 8080; not the listener, not
        // TIME_WAIT, not the client's side (remote port 8080).
        assert_eq!(count_sockets(table, 8080), 2);
    }

    #[test]
    fn reads_the_parent_after_a_name_with_spaces_and_parens() {
        assert_eq!(parent_of("42 (a b) c) S 7 42 42 0"), Some(7));
    }

    #[test]
    fn metrics_by_label() {
        let m = parse_metrics(
            "# TYPE tether_closes_total counter\n\
             tether_closes_total{code=\"1000\"} 12\n\
             tether_closes_total{code=\"1006\"} 3\n\
             tether_connections_open 0\n",
        );
        let closes = by_label(&m, "tether_closes_total", "code");
        assert_eq!(closes.get("1000"), Some(&12));
        assert_eq!(closes.get("1006"), Some(&3));
        assert_eq!(m.get("tether_connections_open"), Some(&0.0));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        assert!(fd_count(std::process::id()).unwrap() > 0);
        let child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(child_count(std::process::id()) >= 1);
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
    }
}
