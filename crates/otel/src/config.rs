//! Where traces go and how many: from the command line's flags and the standard
//! OpenTelemetry environment variables.
//!
//! Precedence (flags first, as for every other Slipway setting):
//! - endpoint: `--otlp-endpoint` (a base URL, `/v1/traces` is appended), else
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as it is), else `OTEL_EXPORTER_OTLP_ENDPOINT`
//!   (base, `/v1/traces` appended); none of them: no export.
//! - `OTEL_SDK_DISABLED=true` turns export off whatever else says.
//! - ratio of new ingress traces sampled: `--trace-sample-ratio`, else
//!   `OTEL_TRACES_SAMPLER_ARG` when `OTEL_TRACES_SAMPLER` is unset or one of the ratio
//!   samplers (`traceidratio`, `parentbased_traceidratio`), `always_on`/`parentbased_always_on`
//!   → 1, `always_off`/`parentbased_always_off` → 0; default [`DEFAULT_SAMPLE_RATIO`].
//!   Incoming sampled/unsampled `traceparent` flags are always respected (parent-based).
//! - `OTEL_EXPORTER_OTLP_HEADERS` (`k=v,k2=v2`, values percent-decoded),
//!   `OTEL_SERVICE_NAME` (default: the process' role), `OTEL_RESOURCE_ATTRIBUTES`
//!   (`k=v,...`; its `service.name` applies when `OTEL_SERVICE_NAME` is unset).

use thiserror::Error;

/// Share of new ingress traces sampled by default (1 %).
pub const DEFAULT_SAMPLE_RATIO: f64 = 0.01;

#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    #[error("{name}: {value:?} is not a ratio between 0 and 1 (e.g. 0.01 for 1 %)")]
    Ratio { name: &'static str, value: String },
    #[error("{name}: {value:?} is not an http:// or https:// URL")]
    Endpoint { name: &'static str, value: String },
}

/// The resolved trace settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Full URL the spans are POSTed to; `None`: export off.
    pub endpoint: Option<String>,
    pub headers: Vec<(String, String)>,
    pub service_name: String,
    pub resource: Vec<(String, String)>,
    pub sample_ratio: f64,
}

impl Config {
    /// Export off.
    pub fn off() -> Self {
        Self {
            endpoint: None,
            headers: Vec::new(),
            service_name: String::new(),
            resource: Vec::new(),
            sample_ratio: 0.0,
        }
    }

    /// Resolves the settings from the flags and `env` (the process environment in
    /// production: `|k| std::env::var(k).ok()`).
    pub fn resolve(
        flag_endpoint: Option<&str>,
        flag_ratio: Option<f64>,
        default_service: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            env(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let base = |s: &str| format!("{}/v1/traces", s.trim_end_matches('/'));
        let (name, raw, endpoint) = match (
            flag_endpoint,
            get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(f), _, _) => ("--otlp-endpoint", f.to_owned(), Some(base(f))),
            (None, Some(t), _) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", t.clone(), Some(t)),
            (None, None, Some(b)) => ("OTEL_EXPORTER_OTLP_ENDPOINT", b.clone(), Some(base(&b))),
            (None, None, None) => ("", String::new(), None),
        };
        if endpoint.is_some() && !(raw.starts_with("http://") || raw.starts_with("https://")) {
            return Err(ConfigError::Endpoint { name, value: raw });
        }
        let disabled = get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let sample_ratio = match flag_ratio {
            Some(r) => check_ratio("--trace-sample-ratio", r, &r.to_string())?,
            None => env_ratio(&get)?,
        };
        let resource = pairs(get("OTEL_RESOURCE_ATTRIBUTES").as_deref().unwrap_or(""));
        let service_name = get("OTEL_SERVICE_NAME")
            .or_else(|| {
                resource
                    .iter()
                    .find(|(k, _)| k == "service.name")
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_else(|| default_service.to_owned());
        Ok(Self {
            endpoint: if disabled { None } else { endpoint },
            headers: pairs(get("OTEL_EXPORTER_OTLP_HEADERS").as_deref().unwrap_or("")),
            service_name,
            resource: resource
                .into_iter()
                .filter(|(k, _)| k != "service.name")
                .collect(),
            sample_ratio,
        })
    }
}

fn check_ratio(name: &'static str, r: f64, raw: &str) -> Result<f64, ConfigError> {
    if (0.0..=1.0).contains(&r) {
        Ok(r)
    } else {
        Err(ConfigError::Ratio {
            name,
            value: raw.to_owned(),
        })
    }
}

fn env_ratio(get: &impl Fn(&str) -> Option<String>) -> Result<f64, ConfigError> {
    let arg = || -> Result<f64, ConfigError> {
        match get("OTEL_TRACES_SAMPLER_ARG") {
            None => Ok(DEFAULT_SAMPLE_RATIO),
            Some(raw) => {
                let bad = || ConfigError::Ratio {
                    name: "OTEL_TRACES_SAMPLER_ARG",
                    value: raw.clone(),
                };
                let r: f64 = raw.parse().map_err(|_| bad())?;
                check_ratio("OTEL_TRACES_SAMPLER_ARG", r, &raw)
            }
        }
    };
    match get("OTEL_TRACES_SAMPLER").as_deref() {
        Some("always_on" | "parentbased_always_on") => Ok(1.0),
        Some("always_off" | "parentbased_always_off") => Ok(0.0),
        _ => arg(),
    }
}

/// `k=v,k2=v2` with percent-encoded values (the OTel list format).
fn pairs(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), percent_decode(v.trim())))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn flags_come_before_the_environment() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
        ];
        let c =
            Config::resolve(Some("http://flag:4318/"), Some(1.0), "slipway", env(&vars)).unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("http://flag:4318/v1/traces"));
        assert_eq!(c.sample_ratio, 1.0);
        let c = Config::resolve(None, None, "slipway", env(&vars)).unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("http://env:4318/v1/traces"));
        assert_eq!(c.sample_ratio, 0.5);
        assert_eq!(c.service_name, "slipway");
    }

    #[test]
    fn the_signal_endpoint_is_used_as_it_is() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://t.example/x/traces",
            ),
        ];
        let c = Config::resolve(None, None, "s", env(&vars)).unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("https://t.example/x/traces"));
        assert_eq!(c.sample_ratio, DEFAULT_SAMPLE_RATIO);
    }

    #[test]
    fn disabled_names_and_headers() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
            ("OTEL_SDK_DISABLED", "TRUE"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "x-honeycomb-team=abc%3D,dd-api-key = k ",
            ),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=shop,deployment.environment=prod",
            ),
        ];
        let c = Config::resolve(Some("http://flag:1"), None, "slipway", env(&vars)).unwrap();
        assert_eq!(c.endpoint, None);
        assert_eq!(
            c.headers,
            vec![
                ("x-honeycomb-team".into(), "abc=".into()),
                ("dd-api-key".into(), "k".into())
            ]
        );
        assert_eq!(c.service_name, "shop");
        assert_eq!(
            c.resource,
            vec![("deployment.environment".into(), "prod".into())]
        );
        let named = [
            ("OTEL_SERVICE_NAME", "edge"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=shop"),
        ];
        assert_eq!(
            Config::resolve(None, None, "x", env(&named))
                .unwrap()
                .service_name,
            "edge"
        );
    }

    #[test]
    fn samplers_and_bad_values() {
        let on = [
            ("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
        ];
        assert_eq!(
            Config::resolve(None, None, "s", env(&on))
                .unwrap()
                .sample_ratio,
            1.0
        );
        let off = [("OTEL_TRACES_SAMPLER", "always_off")];
        assert_eq!(
            Config::resolve(None, None, "s", env(&off))
                .unwrap()
                .sample_ratio,
            0.0
        );
        let bad = [("OTEL_TRACES_SAMPLER_ARG", "2")];
        assert!(matches!(
            Config::resolve(None, None, "s", env(&bad)),
            Err(ConfigError::Ratio {
                name: "OTEL_TRACES_SAMPLER_ARG",
                ..
            })
        ));
        assert!(Config::resolve(None, Some(-0.1), "s", env(&[])).is_err());
        assert_eq!(
            Config::resolve(Some("collector:4318"), None, "s", env(&[])),
            Err(ConfigError::Endpoint {
                name: "--otlp-endpoint",
                value: "collector:4318".into()
            })
        );
    }
}
