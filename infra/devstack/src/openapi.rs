//! `docs/openapi.yaml` as a response checker. The spec is the frontend's contract; the
//! integration and end-to-end tests hold every API answer they receive to it (operation, status,
//! content type, body schema), so the document cannot drift from what the functions answer.

use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

/// The parsed spec, and the validators compiled so far (one per documented response body).
pub struct Contract {
    doc: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

/// What a response is checked as: the request's method and path, and what came back.
pub struct Answer<'a> {
    pub method: &'a str,
    /// A concrete path (`/v1/exercises/ex-1/video`, query allowed) or a template
    /// (`/v1/exercises/{id}/video`, as in API Gateway's route key).
    pub path: &'a str,
    pub status: u16,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

impl Contract {
    pub fn load(path: &Path) -> Result<Contract, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text)
    }

    pub fn parse(yaml: &str) -> Result<Contract, String> {
        let doc: Value =
            serde_yaml::from_str(yaml).map_err(|e| format!("openapi.yaml is not YAML: {e}"))?;
        if doc.get("paths").and_then(Value::as_object).is_none() {
            return Err("openapi.yaml has no paths".into());
        }
        Ok(Contract {
            doc,
            validators: Mutex::default(),
        })
    }

    /// The repository's `docs/openapi.yaml`, read once.
    pub fn repository() -> &'static Contract {
        static SPEC: OnceLock<Contract> = OnceLock::new();
        SPEC.get_or_init(|| {
            Contract::load(&crate::moto::repo_root().join("docs/openapi.yaml"))
                .unwrap_or_else(|e| panic!("{e}"))
        })
    }

    /// Every operation, as (method in capitals, path template).
    pub fn operations(&self) -> Vec<(String, String)> {
        let mut ops = vec![];
        for (path, item) in self.doc["paths"].as_object().into_iter().flatten() {
            for method in item.as_object().into_iter().flat_map(|m| m.keys()) {
                if METHODS.contains(&method.as_str()) {
                    ops.push((method.to_uppercase(), path.clone()));
                }
            }
        }
        ops
    }

    /// Whether `answer` is what the spec documents; the error says what differs.
    pub fn check(&self, answer: &Answer) -> Result<(), String> {
        let path = answer.path.split('?').next().unwrap_or("");
        let (template, item) = self
            .path_item(path)
            .ok_or_else(|| format!("{path}: no such path in the spec"))?;
        let operation = &item[answer.method.to_lowercase()];
        if !operation.is_object() {
            return Err(format!("{} {template}: not in the spec", answer.method));
        }
        let at = format!("{} {template} → {}", answer.method, answer.status);
        let response = self
            .response(operation, answer.status)
            .ok_or_else(|| format!("{at}: status not documented"))?;
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            return match answer.body.is_empty() {
                true => Ok(()),
                false => Err(format!("{at}: documented without a body, got one")),
            };
        };
        let media = answer
            .content_type
            .and_then(|c| c.split(';').next())
            .map(str::trim)
            .unwrap_or("");
        let schema = content
            .get(media)
            .map(|m| &m["schema"])
            .ok_or_else(|| format!("{at}: content type {media:?} not documented"))?;
        let body: Value = serde_json::from_slice(answer.body)
            .map_err(|e| format!("{at}: body is not JSON ({e})"))?;
        let validator = self.validator(&format!("{at} {media}"), schema)?;
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        match errors.is_empty() {
            true => Ok(()),
            false => Err(format!("{at}: {} in {body}", errors.join("; "))),
        }
    }

    /// Panics with the difference: for tests.
    pub fn assert(&self, answer: &Answer) {
        if let Err(e) = self.check(answer) {
            panic!("response breaks docs/openapi.yaml: {e}");
        }
    }

    /// Whether the spec has `path` (concrete or template) at all.
    pub fn documents(&self, path: &str) -> bool {
        self.path_item(path.split('?').next().unwrap_or(""))
            .is_some()
    }

    fn path_item(&self, path: &str) -> Option<(&String, &Value)> {
        let wanted: Vec<&str> = path.split('/').collect();
        self.doc["paths"].as_object()?.iter().find(|(template, _)| {
            let parts: Vec<&str> = template.split('/').collect();
            parts.len() == wanted.len()
                && parts.iter().zip(&wanted).all(|(t, w)| {
                    *t == *w || (t.starts_with('{') && t.ends_with('}') && !w.is_empty())
                })
        })
    }

    /// The documented response for `status`: exact, then its class (`4XX`), then `default`.
    fn response<'a>(&'a self, operation: &'a Value, status: u16) -> Option<&'a Value> {
        let responses = operation.get("responses")?;
        let found = [
            status.to_string(),
            format!("{}XX", status / 100),
            "default".into(),
        ]
        .iter()
        .find_map(|k| responses.get(k))?;
        Some(self.resolve(found))
    }

    fn resolve<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        while let Some(r) = v.get("$ref").and_then(Value::as_str) {
            match r.strip_prefix('#').and_then(|p| self.doc.pointer(p)) {
                Some(target) => v = target,
                None => break,
            }
        }
        v
    }

    /// JSON Schema 2020-12 with formats asserted; `#/components/…` references resolve against
    /// the spec (its components ride along with the schema).
    fn validator(&self, key: &str, schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
        let mut cache = self.validators.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = cache.get(key) {
            return Ok(v.clone());
        }
        let mut root = schema.clone();
        if let Some(o) = root.as_object_mut() {
            o.insert("components".into(), self.doc["components"].clone());
        }
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .map(Arc::new)
            .map_err(|e| format!("{key}: schema does not compile: {e}"))?;
        cache.insert(key.to_owned(), validator.clone());
        Ok(validator)
    }
}

const METHODS: [&str; 7] = ["get", "put", "post", "delete", "patch", "head", "options"];

#[cfg(test)]
mod tests {
    use super::*;

    fn answer<'a>(method: &'a str, path: &'a str, status: u16, body: &'a str) -> Answer<'a> {
        let content_type = match status {
            200 | 201 => Some("application/json"),
            204 => None,
            _ => Some("application/problem+json"),
        };
        Answer {
            method,
            path,
            status,
            content_type,
            body: body.as_bytes(),
        }
    }

    const MEDIA: &str =
        r#"{"exercise_id":"ex-1","thumbnail_url":null,"instructions":[],"expires_at":null}"#;
    const PROBLEM: &str =
        r#"{"type":"urn:exvid:problem:not-found","title":"Not found","status":404}"#;

    #[test]
    fn documented_answers_pass_and_every_kind_of_drift_is_named() {
        let spec = Contract::repository();
        spec.assert(&answer("GET", "/v1/exercises/ex-1/media", 200, MEDIA));
        spec.assert(&answer("GET", "/v1/exercises/{id}/media?x=1", 404, PROBLEM));
        spec.assert(&answer("DELETE", "/v1/exercises/ex-1/video", 204, ""));
        let numbered = MEDIA.replace("null,\"i", "1,\"i");
        let undated = MEDIA.replace("null}", "\"soon\"}");
        let unknown = PROBLEM.replace("not-found", "nope");
        let drift = [
            (answer("GET", "/v1/nothing", 200, MEDIA), "no such path"),
            (
                answer("PUT", "/v1/exercises/e/media", 200, MEDIA),
                "not in the spec",
            ),
            (
                answer("GET", "/v1/exercises/e/media", 418, PROBLEM),
                "status not documented",
            ),
            (
                answer("DELETE", "/v1/exercises/e/video", 204, "{}"),
                "without a body",
            ),
            (
                answer("GET", "/v1/exercises/e/media", 200, "<html>"),
                "not JSON",
            ),
            (
                answer("GET", "/v1/exercises/e/media", 200, &numbered),
                "thumbnail_url",
            ),
            (
                answer("GET", "/v1/exercises/e/media", 200, &undated),
                "date-time",
            ),
            (
                answer("GET", "/v1/exercises/e/media", 404, &unknown),
                "urn:exvid:problem:nope",
            ),
        ];
        for (a, why) in &drift {
            let e = spec.check(a).expect_err(why);
            assert!(e.contains(why), "{why}: {e}");
        }
        let mut plain = answer("GET", "/v1/exercises/e/media", 200, MEDIA);
        plain.content_type = Some("text/plain");
        assert!(spec.check(&plain).unwrap_err().contains("content type"));
    }

    #[test]
    fn operations_are_listed() {
        let ops = Contract::repository().operations();
        assert!(ops.contains(&("GET".into(), "/v1/exercises/{id}/media".into())));
        assert!(ops.len() >= 7, "{ops:?}");
    }
}
