//! The interactive front end: a rustyline editor on its own thread.
//!
//! rustyline blocks in `readline`, so it runs on a plain thread and hands
//! each line to the connection task over a channel; received messages are
//! printed through rustyline's external printer, which redraws the prompt
//! and the half-typed line underneath them. History lives in
//! `~/.tether_history`.
//!
//! When the connection ends while `readline` waits for a key, the process
//! exits from the other thread; the terminal mode saved with `stty -g` at
//! start is restored first, so the shell does not inherit raw mode.

use super::output::Output;
use super::session::Input;
use rustyline::error::ReadlineError;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use tether::{CloseCode, CloseFrame};
use tokio::sync::mpsc;

const HELP: &str = "\
commands:
  TEXT                    send TEXT as a text message
  /text TEXT              send TEXT as text (even if it starts with /)
  /binary TEXT            send TEXT as a binary message
  /ping [DATA]            send a ping
  /close [CODE [REASON]]  start the closing handshake (default 1000)
  /sleep SECS             pause input (messages keep arriving)
  /quit                   close with 1000 (also Ctrl-D, Ctrl-C)
  /help                   this list";

/// Restores the terminal when the session is over.
pub struct EditorHandle {
    saved_tty: Option<String>,
}

impl EditorHandle {
    /// Put the terminal back as it was before the editor started.
    pub fn finish(self) {
        // Leave bracketed-paste mode, which the editor turned on.
        print!("\x1b[?2004l");
        let _ = std::io::Write::flush(&mut std::io::stdout());
        if let Some(saved) = self.saved_tty {
            let _ = Command::new("stty")
                .arg(saved)
                .stdin(Stdio::inherit())
                .status();
        }
    }
}

fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".tether_history"))
}

/// What a line typed by the user asks for; `Err` is a message to show.
pub fn parse_line(line: &str) -> Result<Option<Input>, String> {
    let Some(cmd) = line.strip_prefix('/') else {
        return Ok(Some(Input::Text(line.to_owned())));
    };
    let (name, rest) = cmd.split_once(' ').unwrap_or((cmd, ""));
    match name {
        "text" => Ok(Some(Input::Text(rest.to_owned()))),
        "binary" => Ok(Some(Input::Binary(rest.as_bytes().to_vec()))),
        "ping" => {
            if rest.len() > 125 {
                return Err("a ping carries at most 125 bytes".into());
            }
            Ok(Some(Input::Ping(rest.as_bytes().to_vec())))
        }
        "close" => {
            let rest = rest.trim_start();
            if rest.is_empty() {
                return Ok(Some(Input::Close(Some(CloseFrame::new(
                    CloseCode::NORMAL,
                    "",
                )))));
            }
            let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            let code: u16 = code
                .parse()
                .map_err(|_| format!("`{code}` is not a close code"))?;
            if !CloseCode(code).is_valid_on_wire() {
                return Err(format!(
                    "{code} may not be sent in a Close frame (use 1000-1003, 1007-1014 or 3000-4999)"
                ));
            }
            if reason.len() > 123 {
                return Err("a close reason is at most 123 bytes".into());
            }
            Ok(Some(Input::Close(Some(CloseFrame::new(
                CloseCode(code),
                reason.to_owned(),
            )))))
        }
        "sleep" => {
            let secs: f64 = rest
                .trim()
                .parse()
                .map_err(|_| format!("`{}` is not a number of seconds", rest.trim()))?;
            std::time::Duration::try_from_secs_f64(secs)
                .map(|d| Some(Input::Sleep(d)))
                .map_err(|_| format!("`{secs}` is not a duration"))
        }
        "quit" | "exit" => Ok(Some(Input::Eof)),
        "help" | "?" => Err(HELP.to_owned()),
        other => Err(format!("unknown command /{other}; /help lists them")),
    }
}

/// Start the editor thread; its lines arrive on `tx`.
pub fn start(tx: mpsc::Sender<Input>) -> anyhow::Result<(Output, EditorHandle)> {
    let saved_tty = Command::new("stty")
        .arg("-g")
        .stdin(Stdio::inherit())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty());
    let mut rl = rustyline::DefaultEditor::new()?;
    let printer = rl.create_external_printer()?;
    let history = history_path();
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    eprintln!("type a message and press Enter; /help for commands, Ctrl-D to close");
    std::thread::spawn(move || loop {
        let input = match rl.readline("> ") {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = rl.add_history_entry(line.as_str());
                    if let Some(h) = &history {
                        let _ = rl.save_history(h);
                    }
                }
                match parse_line(&line) {
                    Ok(Some(Input::Sleep(d))) => {
                        std::thread::sleep(d);
                        continue;
                    }
                    Ok(Some(input)) => input,
                    Ok(None) => continue,
                    Err(msg) => {
                        println!("{msg}");
                        continue;
                    }
                }
            }
            Err(ReadlineError::Interrupted) | Err(ReadlineError::Eof) => Input::Eof,
            Err(e) => {
                eprintln!("line editor failed: {e}");
                Input::Eof
            }
        };
        let last = matches!(input, Input::Eof | Input::Close(_));
        if tx.blocking_send(input).is_err() || last {
            return;
        }
    });
    Ok((
        Output::interactive(Box::new(printer)),
        EditorHandle { saved_tty },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interactive_commands_parse() {
        assert!(matches!(parse_line("hi"), Ok(Some(Input::Text(t))) if t == "hi"));
        assert!(matches!(parse_line("/text /x"), Ok(Some(Input::Text(t))) if t == "/x"));
        assert!(matches!(parse_line("/binary ab"), Ok(Some(Input::Binary(b))) if b == b"ab"));
        assert!(matches!(parse_line("/ping"), Ok(Some(Input::Ping(p))) if p.is_empty()));
        match parse_line("/close 4000 bye now") {
            Ok(Some(Input::Close(Some(f)))) => {
                assert_eq!(f.code.as_u16(), 4000);
                assert_eq!(f.reason.as_str(), "bye now");
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_line("/close 1006").is_err());
        assert!(parse_line("/close abc").is_err());
        assert!(parse_line("/nope").is_err());
        assert!(
            matches!(parse_line("/sleep 0.5"), Ok(Some(Input::Sleep(d))) if d.as_millis() == 500)
        );
        assert!(parse_line("/sleep x").is_err());
    }
}
