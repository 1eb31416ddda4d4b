//! The server's log filter: `RUST_LOG` (default `info`), with automerge's internal spans off.
//!
//! automerge 0.6.1 wraps internal functions in INFO-level spans (`#[instrument]`), several per
//! operation while it loads a document; with the filter at `info` the log formatter renders
//! every one of their fields, which took ~19% of the server's CPU in bench phase 6 (`perf
//! record`). They say nothing an operator needs, so they are off unless `RUST_LOG` names
//! automerge itself.

use tracing_subscriber::EnvFilter;

/// The directive that silences automerge below warnings.
const QUIET_AUTOMERGE: &str = "automerge=warn";

/// The filter for `spec` (the value of `RUST_LOG`, if set).
pub fn filter(spec: Option<&str>) -> EnvFilter {
    let spec = spec
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("info");
    let base = EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new("info"));
    if spec.contains("automerge") {
        return base;
    }
    match QUIET_AUTOMERGE.parse() {
        Ok(directive) => base.add_directive(directive),
        Err(_) => base,
    }
}

/// The filter for this process's `RUST_LOG`.
pub fn from_env() -> EnvFilter {
    filter(std::env::var(EnvFilter::DEFAULT_ENV).ok().as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    /// Whether an INFO span of `target` is enabled under `spec`.
    fn info_span_on(spec: Option<&str>, target: &'static str) -> bool {
        let subscriber = tracing_subscriber::registry().with(filter(spec));
        tracing::subscriber::with_default(subscriber, || match target {
            "automerge::storage::load" => {
                !tracing::info_span!(target: "automerge::storage::load", "collect").is_disabled()
            }
            _ => !tracing::info_span!(target: "sotong_server::sync", "hub").is_disabled(),
        })
    }

    #[test]
    fn automerge_spans_are_off_unless_asked_for() {
        for spec in [
            None,
            Some("info"),
            Some(""),
            Some("debug,sotong_timing=debug"),
        ] {
            assert!(!info_span_on(spec, "automerge::storage::load"), "{spec:?}");
            assert!(info_span_on(spec, "sotong_server::sync"), "{spec:?}");
        }
        assert!(info_span_on(
            Some("info,automerge=info"),
            "automerge::storage::load"
        ));
        assert!(!info_span_on(Some("warn"), "sotong_server::sync"));
    }
}
