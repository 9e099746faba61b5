//! W3C trace context (`traceparent`) across engine-mux: extracted from inbound requests so
//! op-node's trace continues, injected into outbound ones so the upstreams' spans join it.
//! Both are no-ops unless a propagator was installed (engine-mux's `--tracing`).

//! Without the `otel` feature both are no-ops and OpenTelemetry is not compiled.

#[cfg(feature = "otel")]
pub use otel::{continue_from, inject};

/// Writes the current span's context into outbound `headers` (nothing: built without `otel`).
#[cfg(not(feature = "otel"))]
pub fn inject(_headers: &mut http::HeaderMap) {}

/// Makes `span` a child of inbound `headers`' trace context (nothing: built without `otel`).
#[cfg(not(feature = "otel"))]
pub fn continue_from(_headers: &http::HeaderMap, _span: &tracing::Span) {}

#[cfg(feature = "otel")]
mod otel {
    use http::{HeaderMap, HeaderName, HeaderValue};
    use opentelemetry::{
        Context,
        propagation::{Extractor, Injector},
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    struct Headers<'a>(&'a mut HeaderMap);

    impl Injector for Headers<'_> {
        fn set(&mut self, key: &str, value: String) {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(key.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                self.0.insert(name, value);
            }
        }
    }

    struct ReadHeaders<'a>(&'a HeaderMap);

    impl Extractor for ReadHeaders<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }

        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(HeaderName::as_str).collect()
        }
    }

    /// Writes the current span's context into outbound `headers`.
    pub fn inject(headers: &mut HeaderMap) {
        let cx = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&cx, &mut Headers(headers))
        });
    }

    /// Makes `span` a child of the trace context carried by inbound `headers`, if any.
    pub fn continue_from(headers: &HeaderMap, span: &tracing::Span) {
        if headers.contains_key("traceparent") {
            let parent: Context = opentelemetry::global::get_text_map_propagator(|p| {
                p.extract(&ReadHeaders(headers))
            });
            let _ = span.set_parent(parent);
        }
    }

    #[cfg(test)]
    mod tests {
        use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
        use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider};
        use tracing_subscriber::prelude::*;

        use super::*;

        #[test]
        fn outbound_calls_carry_the_span_and_inbound_context_is_continued() {
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            let provider = SdkTracerProvider::builder().build();
            let subscriber = tracing_subscriber::registry()
                .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
            tracing::subscriber::with_default(subscriber, || {
                let inbound_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
                let mut inbound = HeaderMap::new();
                inbound.insert(
                    "traceparent",
                    HeaderValue::from_str(&format!("00-{inbound_trace}-00f067aa0ba902b7-01"))
                        .unwrap(),
                );
                let span = tracing::info_span!("rpc");
                continue_from(&inbound, &span);
                let _entered = span.enter();
                let mut outbound = HeaderMap::new();
                inject(&mut outbound);
                let traceparent = outbound
                    .get("traceparent")
                    .expect("traceparent injected")
                    .to_str()
                    .unwrap()
                    .to_string();
                assert!(
                    traceparent.contains(inbound_trace),
                    "the upstream call joins op-node's trace: {traceparent}"
                );
                let cx = span.context();
                assert_eq!(
                    cx.span().span_context().trace_id().to_string(),
                    inbound_trace
                );
            });
        }

        #[test]
        fn nothing_is_injected_without_tracing() {
            let mut headers = HeaderMap::new();
            inject(&mut headers);
            assert!(headers.get("traceparent").is_none());
        }
    }
}
