//! `portcullis status`: the console's at-a-glance view in a terminal, for a shell on the box —
//! health score and its inputs, readiness, maintenance, channels and flags, upstreams, the last
//! critical events. Reads the control API with a token from the environment (never from the
//! command line, where `ps` would show it).

use serde_json::Value;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Longest answer read from the control listener.
const MAX_ANSWER: u64 = 8 * 1024 * 1024;

/// One `GET` to the control listener at `host:port` (plain HTTP/1.1, `Connection: close`):
/// `(status, JSON body)`.
fn get(addr: &str, path: &str, token: Option<&str>, timeout: Duration) -> Result<(u16, Value), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|e| format!("{addr}: {e}"))?;
    let mut raw = Vec::new();
    s.take(MAX_ANSWER).read_to_end(&mut raw).map_err(|e| format!("{addr}{path}: {e}"))?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| format!("{path}: no HTTP answer"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("{path}: no HTTP status"))?;
    let mut body = raw[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// A chunked body's data.
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).split(';').next().unwrap_or("").trim(), 16);
        let Ok(n) = size else { break };
        if n == 0 || b.len() < i + 2 + n {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[(i + 4 + n).min(b.len())..];
    }
    out
}

/// `host:port` of a control URL (`http://127.0.0.1:9090`, or `127.0.0.1:9090`).
fn authority(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    if url.starts_with("https://") {
        return Err("status speaks plain HTTP to the local control listener; give http://host:port".into());
    }
    let a = rest.split('/').next().unwrap_or("");
    if a.is_empty() {
        return Err(format!("not a control address: `{url}`"));
    }
    Ok(a.to_string())
}

/// The whole status text, or why it cannot be had.
pub fn render(url: &str, token: Option<&str>) -> Result<String, String> {
    let addr = authority(url)?;
    let t = Duration::from_secs(5);
    let (_, ready) = get(&addr, "/ready", None, t)?;
    let mut out = String::new();
    let _ = writeln!(out, "Portcullis at {url}");
    let checks = ready.get("checks").and_then(Value::as_object).map_or(String::new(), |c| {
        c.iter()
            .map(|(k, v)| format!("{k}={}", if v.as_bool() == Some(true) { "ok" } else { "FAIL" }))
            .collect::<Vec<_>>()
            .join(" ")
    });
    let _ = writeln!(out, "ready:      {}  ({checks})", if ready["ready"] == true { "yes" } else { "NO" });
    let Some(token) = token else {
        let _ = writeln!(out, "(set PORTCULLIS_TOKEN to a viewer token for switches, upstreams and events)");
        return Ok(out);
    };
    let v1 = |path: &str| -> Result<Value, String> {
        match get(&addr, path, Some(token), t)? {
            (200, v) => Ok(v),
            (s, v) => Err(format!("{path}: {s} {}", v["code"].as_str().unwrap_or(""))),
        }
    };
    let sum = v1("/v1/summary?hours=1")?;
    let sev = &sum["events"]["by_severity"];
    let _ = writeln!(
        out,
        "health:     {} {}  (1 h: {} critical, {} warning, {} info; {} requests, {} 5xx)",
        sum["health_score"],
        sum["health_status"].as_str().unwrap_or("?"),
        sev["critical"],
        sev["warning"],
        sev["info"],
        sum["requests"]["total"],
        sum["requests"]["errors_5xx"]
    );
    let sw = v1("/v1/switches")?;
    let m = &sw["maintenance"];
    let _ = writeln!(
        out,
        "maintenance: {}{}",
        if m["active"] == true { "ON" } else { "off" },
        m["set_by"].as_str().map(|b| format!("  (by {b}: {})", m["reason"].as_str().unwrap_or(""))).unwrap_or_default()
    );
    let list = |v: &Value| -> String {
        v.as_object().map_or(String::new(), |o| {
            o.iter()
                .map(|(k, t)| format!("{k}={}", if t["enabled"] == true { "on" } else { "OFF" }))
                .collect::<Vec<_>>()
                .join(" ")
        })
    };
    let _ = writeln!(out, "channels:   {}", list(&sw["channels"]));
    let _ = writeln!(out, "flags:      {}", list(&sw["flags"]));
    let up = v1("/v1/upstreams")?;
    for p in up["pools"].as_array().into_iter().flatten() {
        let b: Vec<String> = p["backends"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                format!("{}={}", b["address"].as_str().unwrap_or("?"), if b["healthy"] == true { "up" } else { "DOWN" })
            })
            .collect();
        let _ = writeln!(out, "upstream {}: {}", p["name"].as_str().unwrap_or("?"), b.join(" "));
    }
    let ev = v1("/v1/events?severity=critical&limit=5&hours=24")?;
    let events = ev["events"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "last critical events (24 h): {}", if events.is_empty() { "none" } else { "" });
    for e in events {
        let _ = writeln!(
            out,
            "  {} {} {} {} {}{}",
            e["time"].as_str().unwrap_or(""),
            e["type"].as_str().unwrap_or(""),
            e["action"].as_str().unwrap_or(""),
            e["client_ip"].as_str().unwrap_or("-"),
            e["path"].as_str().unwrap_or(""),
            e["tenant"].as_str().map(|t| format!(" tenant={t}")).unwrap_or_default()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
