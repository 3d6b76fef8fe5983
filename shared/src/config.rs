//! Configuration from the environment. A missing or malformed variable fails init with one line
//! naming it; secret values are never echoed.
//!
//! Endpoints of AWS services are not configured here: the SDK reads the standard
//! `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` variables, so one binary runs against AWS,
//! moto or the local cloud.

use std::str::FromStr;

use crate::auth::ClaimNames;
use crate::playback_token::TokenKey;
use crate::video::Provider;

/// Why configuration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Looks a variable up by name.
type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// A view of environment variables; tests pass a map instead of the process environment.
pub struct Env<'a> {
    lookup: Lookup<'a>,
}

impl Env<'static> {
    /// The process environment.
    pub fn process() -> Self {
        Env {
            lookup: Box::new(|name| std::env::var(name).ok()),
        }
    }
}

impl<'a> Env<'a> {
    pub fn from_fn(lookup: impl Fn(&str) -> Option<String> + 'a) -> Self {
        Env {
            lookup: Box::new(lookup),
        }
    }

    /// The value, with blank treated as unset.
    pub fn optional(&self, name: &'static str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing(name))
    }

    /// Parses an optional value, falling back to `default`.
    pub fn parsed_or<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
                name,
                reason: e.to_string(),
            }),
        }
    }

    /// `VIDEO_PROVIDER`, default `bunny_stream`.
    pub fn provider(&self) -> Result<Provider, ConfigError> {
        self.parsed_or("VIDEO_PROVIDER", Provider::BunnyStream)
    }

    /// `ORG_CLAIM` and `ROLES_CLAIM`, with the platform's defaults.
    pub fn claim_names(&self) -> ClaimNames {
        let defaults = ClaimNames::default();
        ClaimNames {
            org: self.optional("ORG_CLAIM").unwrap_or(defaults.org),
            roles: self.optional("ROLES_CLAIM").unwrap_or(defaults.roles),
        }
    }

    /// `PLAYBACK_URL_TTL_SECONDS`: 60 s to 24 h, default 3600.
    pub fn playback_ttl(&self) -> Result<u64, ConfigError> {
        let ttl: u64 = self.parsed_or("PLAYBACK_URL_TTL_SECONDS", 3600)?;
        if !(60..=86_400).contains(&ttl) {
            return Err(ConfigError::Invalid {
                name: "PLAYBACK_URL_TTL_SECONDS",
                reason: "must be between 60 and 86400 seconds".into(),
            });
        }
        Ok(ttl)
    }

    /// The CDN that serves `provider`'s renditions, if configured. Half a pair (host without
    /// key or the reverse) is an error, not a silent "unconfigured".
    pub fn cdn(&self, provider: Provider) -> Result<Option<Cdn>, ConfigError> {
        let (host_var, key_var) = match provider {
            Provider::BunnyStream => ("BUNNY_STREAM_CDN_HOSTNAME", "BUNNY_STREAM_CDN_TOKEN_KEY"),
            Provider::AwsMediaconvert => ("AWS_CLOUDFRONT_DOMAIN", "CDN_TOKEN_KEY"),
        };
        match (self.optional(host_var), self.optional(key_var)) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(ConfigError::Missing(key_var)),
            (None, Some(_)) => Err(ConfigError::Missing(host_var)),
            (Some(host), Some(key)) => {
                let base_url = cdn_base_url(&host).map_err(|reason| ConfigError::Invalid {
                    name: host_var,
                    reason,
                })?;
                if key.len() < 16 {
                    return Err(ConfigError::Invalid {
                        name: key_var,
                        reason: "token keys shorter than 16 characters are refused".into(),
                    });
                }
                Ok(Some(Cdn {
                    base_url,
                    key: TokenKey::new(key),
                }))
            }
        }
    }
}

/// A CDN that serves signed URLs.
#[derive(Debug, Clone)]
pub struct Cdn {
    /// `https://host` (no trailing slash). A bare host name gets `https://`; an explicit
    /// `http://` is kept for local stand-ins.
    pub base_url: String,
    pub key: TokenKey,
}

/// `vz-1.b-cdn.net` -> `https://vz-1.b-cdn.net`; refuses paths, queries and credentials.
pub fn cdn_base_url(value: &str) -> Result<String, String> {
    let value = value.trim();
    let (scheme, host) = match value.split_once("://") {
        Some((s @ ("http" | "https"), h)) => (s, h),
        Some(_) => return Err("scheme must be http or https".into()),
        None => ("https", value),
    };
    let host = host.trim_end_matches('/');
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '?' | '#' | '@'))
    {
        return Err("expected a host name such as vz-abc.b-cdn.net".into());
    }
    Ok(format!("{scheme}://{host}"))
}

/// Ends init with one line on stderr (Lambda logs it and reports the init failure).
pub fn fail_init(function: &str, error: impl std::fmt::Display) -> ! {
    eprintln!("exvid {function}: configuration error: {error}");
    std::process::exit(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn required_and_blank_values() {
        let vars = env(&[("TABLE_NAME", "  ")]);
        let e = Env::from_fn(|n| vars.get(n).cloned());
        assert_eq!(
            e.required("TABLE_NAME"),
            Err(ConfigError::Missing("TABLE_NAME"))
        );
        assert_eq!(
            ConfigError::Missing("TABLE_NAME").to_string(),
            "TABLE_NAME is not set"
        );
    }

    #[test]
    fn provider_default_and_errors() {
        let vars = env(&[]);
        assert_eq!(
            Env::from_fn(|n| vars.get(n).cloned()).provider(),
            Ok(Provider::BunnyStream)
        );
        let vars = env(&[("VIDEO_PROVIDER", "vimeo")]);
        let err = Env::from_fn(|n| vars.get(n).cloned())
            .provider()
            .unwrap_err();
        assert!(err.to_string().starts_with("VIDEO_PROVIDER is invalid"));
    }

    #[test]
    fn ttl_bounds() {
        for (v, ok) in [
            ("3600", true),
            ("59", false),
            ("86401", false),
            ("x", false),
            ("-5", false),
        ] {
            let vars = env(&[("PLAYBACK_URL_TTL_SECONDS", v)]);
            assert_eq!(
                Env::from_fn(|n| vars.get(n).cloned())
                    .playback_ttl()
                    .is_ok(),
                ok,
                "{v}"
            );
        }
    }

    #[test]
    fn cdn_pairs() {
        let key = "0123456789abcdef-secret";
        let vars = env(&[
            ("BUNNY_STREAM_CDN_HOSTNAME", "vz-1.b-cdn.net/"),
            ("BUNNY_STREAM_CDN_TOKEN_KEY", key),
            ("AWS_CLOUDFRONT_DOMAIN", "d1.cloudfront.net"),
        ]);
        let e = Env::from_fn(|n| vars.get(n).cloned());
        let bunny = e.cdn(Provider::BunnyStream).unwrap().unwrap();
        assert_eq!(bunny.base_url, "https://vz-1.b-cdn.net");
        assert!(!format!("{bunny:?}").contains(key));
        assert_eq!(
            e.cdn(Provider::AwsMediaconvert).unwrap_err(),
            ConfigError::Missing("CDN_TOKEN_KEY")
        );
        let vars = env(&[
            ("AWS_CLOUDFRONT_DOMAIN", "d1.cloudfront.net"),
            ("CDN_TOKEN_KEY", "tiny"),
        ]);
        let err = Env::from_fn(|n| vars.get(n).cloned())
            .cdn(Provider::AwsMediaconvert)
            .unwrap_err();
        assert!(!err.to_string().contains("tiny"), "{err}");
    }

    #[test]
    fn cdn_base_urls() {
        assert_eq!(
            cdn_base_url("http://127.0.0.1:9000").unwrap(),
            "http://127.0.0.1:9000"
        );
        for bad in ["", "ftp://x", "a/b", "user@host", "a b", "https://"] {
            assert!(cdn_base_url(bad).is_err(), "{bad}");
        }
    }
}
