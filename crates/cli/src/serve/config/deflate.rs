//! `[deflate]`: how `tether serve` compresses (permessage-deflate, RFC
//! 7692) when `limits.permessage_deflate` is on and a client offers it.
//! Raw TOML -> `DeflateConfig`; every error names its key.

use super::raw::SizeValue;
use super::values::parse_size_value;
use serde::{Deserialize, Serialize};
use tether::proto::deflate::{CodecMemory, DeflateConfig};

/// `[deflate]`.
#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDeflate {
    /// zlib level 0..=9 (default 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u32>,
    /// Largest window the server compresses with, 8..=15 (default 15);
    /// announced to clients as `server_max_window_bits` when below 15.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_max_window_bits: Option<u8>,
    /// zlib memLevel 1..=9 of the shared compressors (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_level: Option<u8>,
    /// Sent bytes a connection keeps as its compression context (default
    /// 16K, at most 32K).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_history: Option<SizeValue>,
    /// Compressor and decompressor states shared per worker thread
    /// (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub states_per_thread: Option<usize>,
    /// Messages smaller than this go uncompressed (default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size: Option<SizeValue>,
}

impl RawDeflate {
    /// Fill every missing key with its default (`RawConfig::with_args`).
    pub fn with_defaults(mut self) -> Self {
        let d = DeflateConfig::default();
        self.level.get_or_insert(d.level);
        self.server_max_window_bits
            .get_or_insert(d.server_max_window_bits);
        self.mem_level.get_or_insert(d.memory.mem_level);
        self.send_history.get_or_insert(SizeValue::Text(format!(
            "{}K",
            d.memory.send_history / 1024
        )));
        self.states_per_thread
            .get_or_insert(d.memory.states_per_thread);
        self.min_size
            .get_or_insert(SizeValue::Bytes(d.min_size as u64));
        self
    }

    /// The validated settings.
    pub fn validate(&self) -> Result<DeflateConfig, String> {
        let d = DeflateConfig::default();
        let level = self.level.unwrap_or(d.level);
        if level > 9 {
            return Err(format!("`deflate.level` is {level}; it must be 0..=9"));
        }
        let bits = self
            .server_max_window_bits
            .unwrap_or(d.server_max_window_bits);
        if !(8..=15).contains(&bits) {
            return Err(format!(
                "`deflate.server_max_window_bits` is {bits}; it must be 8..=15"
            ));
        }
        let mem_level = self.mem_level.unwrap_or(d.memory.mem_level);
        if !(1..=9).contains(&mem_level) {
            return Err(format!(
                "`deflate.mem_level` is {mem_level}; it must be 1..=9"
            ));
        }
        let send_history = match &self.send_history {
            Some(v) => size(v, "send_history")?,
            None => d.memory.send_history,
        };
        if send_history > 32 * 1024 {
            return Err(format!(
                "`deflate.send_history` is {send_history} bytes; at most 32K (the largest window) is used"
            ));
        }
        let states_per_thread = self.states_per_thread.unwrap_or(d.memory.states_per_thread);
        if states_per_thread == 0 {
            return Err("`deflate.states_per_thread` must be at least 1".into());
        }
        let min_size = match &self.min_size {
            Some(v) => size(v, "min_size")?,
            None => d.min_size,
        };
        Ok(d.with_server_max_window_bits(bits)
            .with_level(level)
            .with_min_size(min_size)
            .with_memory(
                CodecMemory::default()
                    .with_mem_level(mem_level)
                    .with_send_history(send_history)
                    .with_states_per_thread(states_per_thread),
            ))
    }
}

fn size(v: &SizeValue, key: &str) -> Result<usize, String> {
    parse_size_value(v, &format!("deflate.{key}"))
}

#[cfg(test)]
mod tests {
    use super::RawDeflate;
    use tether::proto::deflate::DeflateConfig;

    fn parse(text: &str) -> Result<DeflateConfig, String> {
        let raw: RawDeflate = toml::from_str(text).map_err(|e| e.to_string())?;
        raw.with_defaults().validate()
    }

    #[test]
    fn defaults_are_the_library_defaults() {
        assert_eq!(parse("").unwrap(), DeflateConfig::default());
    }

    #[test]
    fn every_key_is_applied() {
        let c = parse(
            "level = 1\nserver_max_window_bits = 12\nmem_level = 4\nsend_history = \"8K\"\nstates_per_thread = 2\nmin_size = 256\n",
        )
        .unwrap();
        assert_eq!(
            (c.level, c.server_max_window_bits, c.min_size),
            (1, 12, 256)
        );
        assert_eq!(
            (
                c.memory.mem_level,
                c.memory.send_history,
                c.memory.states_per_thread
            ),
            (4, 8192, 2)
        );
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        for (text, key) in [
            ("level = 10", "deflate.level"),
            (
                "server_max_window_bits = 16",
                "deflate.server_max_window_bits",
            ),
            (
                "server_max_window_bits = 7",
                "deflate.server_max_window_bits",
            ),
            ("mem_level = 0", "deflate.mem_level"),
            ("send_history = \"64K\"", "deflate.send_history"),
            ("send_history = \"lots\"", "deflate.send_history"),
            ("states_per_thread = 0", "deflate.states_per_thread"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}
