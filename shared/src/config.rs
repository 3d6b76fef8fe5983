//! Configuration from the environment. A missing or malformed variable fails init with one line
//! naming it; secret values are never echoed.
//!
//! Endpoints of AWS services are not configured here: the SDK reads the standard
//! `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` variables, so one binary runs against AWS,
//! moto or the local cloud.

use std::str::FromStr;

use crate::domain::auth::ClaimNames;
use crate::domain::video::Provider;

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
}

/// `vz-1.b-cdn.net` -> `https://vz-1.b-cdn.net`; refuses paths, queries and credentials.
/// `PLAYBACK_SESSION_KEY` (signs and checks playback session grants), if set; a key shorter
/// than 16 characters is refused.
pub fn playback_session_key(
    env: &Env<'_>,
) -> Result<Option<crate::domain::playback_session::GrantKey>, ConfigError> {
    match env.optional("PLAYBACK_SESSION_KEY") {
        None => Ok(None),
        Some(key) if key.len() < 16 => Err(ConfigError::Invalid {
            name: "PLAYBACK_SESSION_KEY",
            reason: "keys shorter than 16 characters are refused".into(),
        }),
        Some(key) => Ok(Some(crate::domain::playback_session::GrantKey::new(key))),
    }
}

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
