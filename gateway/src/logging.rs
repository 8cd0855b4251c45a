//! Structured JSON logs on stdout via `tracing` (Pingora's own `log` records included), with
//! ECS-style field names on the access log.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call once; later calls are ignored.
pub fn init(level: &str) {
    let spec = std::env::var("PORTCULLIS_LOG").ok().filter(|s| EnvFilter::try_new(s).is_ok());
    let spec =
        spec.unwrap_or_else(|| if EnvFilter::try_new(level).is_ok() { level.to_string() } else { "info".into() });
    let filter = cap_h2(EnvFilter::new(&spec), &spec);
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}

/// The `h2` crate logs a warning for every PING ACK it did not ask for: any HTTP/2 client could
/// turn 17-byte frames into log lines (100 000 of them a second on one connection). Its records
/// below `error` are kept only when the filter names the crate (`info,h2=debug`).
fn cap_h2(filter: EnvFilter, spec: &str) -> EnvFilter {
    let names_h2 = spec.split(',').any(|d| d.trim().split(['=', '[', ':']).next() == Some("h2"));
    match "h2=error".parse() {
        Ok(d) if !names_h2 => filter.add_directive(d),
        _ => filter,
    }
}

#[cfg(test)]
mod tests;
