//! The bridge's command line: what to forward (`--out`, `--in`) and how to
//! reach Zenoh (`--config`, `--mode`, `--listen`, `--connect`,
//! `--multicast-scouting`). Everything is checked here, before any bus is
//! opened or any socket is bound: a malformed key expression, bus name or
//! endpoint is a usage error naming the bad part.

use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, ValueEnum};
use zenoh::config::EndPoint;
use zenoh::key_expr::OwnedKeyExpr;

/// `BUS=KEYEXPR`: every message of the local bus is put on the key expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutMap {
    /// The local bus.
    pub bus: String,
    /// The Zenoh key expression the messages are put on.
    pub key: OwnedKeyExpr,
}

/// `KEYEXPR=BUS`: every sample received on the key expression is published on the local bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InMap {
    /// The Zenoh key expression subscribed to.
    pub key: OwnedKeyExpr,
    /// The local bus.
    pub bus: String,
}

/// Zenoh's error text without the source locations it appends
/// (" at /path/file.rs:NN."), wherever they are in the text.
pub fn zenoh_error(e: impl std::fmt::Display) -> String {
    let mut s = e.to_string();
    let mut from = 0;
    while let Some(i) = s[from..].find(" at /").map(|i| i + from) {
        let rest = &s[i..];
        let Some(j) = rest.find(".rs:") else { break };
        let digits = rest[j + 4..].bytes().take_while(u8::is_ascii_digit).count();
        let mut end = j + 4 + digits;
        if digits == 0 {
            from = i + 1;
            continue;
        }
        if rest[end..].starts_with('.') {
            end += 1;
        }
        s.replace_range(i..i + end, "");
        from = i;
    }
    s
}

fn parse_bus(s: &str) -> Result<String, String> {
    shmbus::validate_name(s).map_err(|e| e.to_string())?;
    Ok(s.to_owned())
}

fn parse_key(s: &str) -> Result<OwnedKeyExpr, String> {
    OwnedKeyExpr::from_str(s).map_err(|e| format!("{s:?} is not a valid Zenoh key expression: {}", zenoh_error(e)))
}

fn split(s: &str, what: &str) -> Result<(String, String), String> {
    // Bus names never contain '=', and neither do key expressions in practice;
    // split at the first one and let each side's parser say what is wrong.
    match s.split_once('=') {
        Some((a, b)) => Ok((a.to_owned(), b.to_owned())),
        None => Err(format!("{s:?} is not of the form {what}")),
    }
}

/// Parses `--out BUS=KEYEXPR`.
pub fn parse_out(s: &str) -> Result<OutMap, String> {
    let (bus, key) = split(s, "BUS=KEYEXPR")?;
    Ok(OutMap { bus: parse_bus(&bus)?, key: parse_key(&key)? })
}

/// Parses `--in KEYEXPR=BUS`.
pub fn parse_in(s: &str) -> Result<InMap, String> {
    let (key, bus) = split(s, "KEYEXPR=BUS")?;
    Ok(InMap { key: parse_key(&key)?, bus: parse_bus(&bus)? })
}

fn parse_endpoint(s: &str) -> Result<String, String> {
    EndPoint::from_str(s)
        .map_err(|e| format!("{s:?} is not a Zenoh endpoint such as tcp/192.0.2.7:7447: {}", zenoh_error(e)))?;
    Ok(s.to_owned())
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds")),
    }
}

/// The Zenoh session's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Talks directly to other peers (and routers); needs no infrastructure.
    Peer,
    /// Talks only through one router (or peer) it connects to.
    Client,
}

/// On or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// The arguments of `shmbus-zenoh` and of `shmbus bridge`.
#[derive(Clone, Debug, Args)]
pub struct BridgeArgs {
    /// Forward every message of the local bus BUS to the Zenoh key expression (repeatable).
    #[arg(long = "out", value_name = "BUS=KEYEXPR", value_parser = parse_out)]
    pub outs: Vec<OutMap>,
    /// Publish every sample received on the Zenoh key expression to the local bus BUS (repeatable).
    #[arg(long = "in", value_name = "KEYEXPR=BUS", value_parser = parse_in)]
    pub ins: Vec<InMap>,
    /// A Zenoh configuration file (JSON5); the flags below override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The Zenoh session mode [default: the config file's, else peer].
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// An endpoint to listen on, e.g. tcp/0.0.0.0:7447 (repeatable).
    #[arg(long, value_name = "ENDPOINT", value_parser = parse_endpoint)]
    pub listen: Vec<String>,
    /// An endpoint of a peer or router to connect to, e.g. tcp/192.0.2.7:7447 (repeatable).
    #[arg(long, value_name = "ENDPOINT", value_parser = parse_endpoint)]
    pub connect: Vec<String>,
    /// Find peers by UDP multicast on the local network [default: the config file's, else on].
    #[arg(long, value_enum, value_name = "ON|OFF")]
    pub multicast_scouting: Option<Switch>,
    /// Print a stats line per mapping every SECS seconds (0: only at exit).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub stats: f64,
    /// Most bytes of received samples held in memory per --in mapping while its bus is full;
    /// beyond it, Zenoh's receive path waits (back-pressure to the sender).
    #[arg(long, value_name = "BYTES", default_value = "67108864")]
    pub in_buffer: usize,
}

impl BridgeArgs {
    /// The Zenoh configuration: the file (or Zenoh's defaults), then the flags.
    pub fn zenoh_config(&self) -> Result<zenoh::Config, String> {
        let mut c = match &self.config {
            Some(p) => zenoh::Config::from_file(p)
                .map_err(|e| format!("cannot read the Zenoh configuration {}: {}", p.display(), zenoh_error(e)))?,
            None => zenoh::Config::default(),
        };
        let mut set = |key: &str, value: String| {
            c.insert_json5(key, &value)
                .map_err(|e| format!("cannot set Zenoh option {key} to {value}: {}", zenoh_error(e)))
        };
        if let Some(m) = self.mode {
            set("mode", if m == Mode::Peer { "\"peer\"".into() } else { "\"client\"".into() })?;
        }
        let list = |v: &[String]| format!("[{}]", v.iter().map(|e| format!("{e:?}")).collect::<Vec<_>>().join(","));
        if !self.listen.is_empty() {
            set("listen/endpoints", list(&self.listen))?;
        }
        if !self.connect.is_empty() {
            set("connect/endpoints", list(&self.connect))?;
        }
        if let Some(s) = self.multicast_scouting {
            set("scouting/multicast/enabled", (s == Switch::On).to_string())?;
        }
        Ok(c)
    }

    /// Checks what clap cannot: at least one mapping, and no bus forwarded twice.
    pub fn check(&self) -> Result<(), String> {
        if self.outs.is_empty() && self.ins.is_empty() {
            return Err("nothing to bridge: give at least one --out BUS=KEYEXPR or --in KEYEXPR=BUS".into());
        }
        for (i, o) in self.outs.iter().enumerate() {
            if self.outs[..i].iter().any(|p| p.bus == o.bus) {
                return Err(format!(
                    "bus '{}' is given to --out twice; one --out per bus (every message would be sent twice)",
                    o.bus
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_parse_and_bad_parts_are_named() {
        let o = parse_out("orders=site/a/orders").unwrap();
        assert_eq!((o.bus.as_str(), o.key.as_str()), ("orders", "site/a/orders"));
        let i = parse_in("site/*/orders=orders").unwrap();
        assert_eq!((i.key.as_str(), i.bus.as_str()), ("site/*/orders", "orders"));
        assert!(parse_out("orders").unwrap_err().contains("BUS=KEYEXPR"));
        assert!(parse_out("orders=a//b").unwrap_err().contains("not a valid Zenoh key expression"));
        assert!(parse_out("orders=a/**/**").is_err());
        assert!(parse_out("../x=a/b").is_err());
        assert!(parse_in("a/b=").is_err());
        assert!(parse_endpoint("tcp/127.0.0.1:7447").is_ok());
        assert!(parse_endpoint("127.0.0.1").is_err());
        assert_eq!(zenoh_error("Invalid `a//b` at /x/borrowed.rs:777."), "Invalid `a//b`");
        assert_eq!(
            zenoh_error("bound to tcp/127.0.0.1:1: [127.0.0.1:1: Address in use (os error 98) at /r/tcp.rs:61.]"),
            "bound to tcp/127.0.0.1:1: [127.0.0.1:1: Address in use (os error 98)]"
        );
        assert_eq!(zenoh_error("plain at /tmp"), "plain at /tmp");
    }
}
