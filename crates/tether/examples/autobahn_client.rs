//! Runs every case of an Autobahn|Testsuite `fuzzingserver` against Tether's
//! client: `cargo run --release -p tether-ws --example autobahn_client -- URL [--agent NAME]`.
//!
//! For each case it connects to `URL/runCase?case=N&agent=NAME` and echoes
//! every message back until the server closes; then it asks the server to
//! write its reports (`updateReports`).

use futures_util::{FutureExt, SinkExt, StreamExt};
use tether::{ClientBuilder, Message, WebSocketConfig};

fn config() -> WebSocketConfig {
    WebSocketConfig::default().with_protocol(
        tether::proto::Config::default()
            .with_max_message_size(64 << 20)
            .with_max_frame_size(64 << 20)
            // Offer permessage-deflate so that cases 12.* and 13.* run.
            .with_deflate(Some(tether::proto::deflate::DeflateConfig::default())),
    )
}

async fn case_count(base: &str, agent: &str) -> tether::Result<u32> {
    let url = format!("{base}/getCaseCount?agent={agent}");
    let (mut ws, _) = ClientBuilder::new(url).config(config()).connect().await?;
    let mut count = 0;
    while let Some(msg) = ws.next().await {
        if let Message::Text(t) = msg? {
            count = t.parse().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("bad case count {t:?}"),
                )
            })?;
        }
    }
    Ok(count)
}

async fn run_case(base: &str, case: u32, agent: &str) -> tether::Result<()> {
    let url = format!("{base}/runCase?case={case}&agent={agent}");
    let (mut ws, _) = ClientBuilder::new(url).config(config()).connect().await?;
    while let Some(msg) = ws.next().await {
        let mut msg = msg?;
        loop {
            if msg.is_data() {
                ws.feed(msg).await?;
            }
            match ws.next().now_or_never() {
                Some(Some(next)) => msg = next?,
                _ => break,
            }
        }
        ws.flush().await?;
    }
    Ok(())
}

async fn update_reports(base: &str, agent: &str) -> tether::Result<()> {
    let url = format!("{base}/updateReports?agent={agent}");
    let (mut ws, _) = ClientBuilder::new(url).connect().await?;
    ws.close(None).await
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut base = None;
    let mut agent = "tether-client".to_owned();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--agent" => agent = args.next().expect("--agent needs a name"),
            "-h" | "--help" => {
                println!("usage: autobahn_client [--agent NAME] URL   (e.g. ws://127.0.0.1:9001)");
                return;
            }
            _ => base = Some(a),
        }
    }
    let base = base.expect("usage: autobahn_client [--agent NAME] URL");
    let base = base.trim_end_matches('/');
    let count = case_count(base, &agent).await.expect("getCaseCount failed");
    eprintln!("running {count} cases against {base} as {agent}");
    for case in 1..=count {
        if let Err(e) = run_case(base, case, &agent).await {
            eprintln!("case {case}: {e}");
        }
    }
    update_reports(base, &agent)
        .await
        .expect("updateReports failed");
    eprintln!("done: {count} cases");
}
