//! `template.yaml` as the local cloud's source of truth: the HTTP API's routes (method, path,
//! the function and its binary), the function URL route, the table's key schema and the media
//! bucket's CORS rule are read from the template, never restated here, so the local cloud
//! cannot drift from what deploys.
//!
//! CloudFormation's short-form tags (`!Ref`, `!Sub`, `!If`, …) parse as tagged values; only
//! plain literals are read as facts, and a reference is reported as such.

use std::path::Path;

use serde_yaml::Value;

/// Why the template could not be read as the local cloud needs it.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("template.yaml is not YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("template.yaml: {0}")]
    Shape(String),
}

/// One HTTP API route and the function behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: String,
    /// API Gateway path template, e.g. `/v1/exercises/{id}/video`.
    pub path: String,
    /// The function's logical id in the template.
    pub function: String,
    /// The cargo binary (`Metadata.BuildProperties.Binary`, what SAM's cargo-lambda build
    /// reads), i.e. the bootstrap to run.
    pub binary: String,
}

impl Route {
    /// API Gateway's route key, as handlers see it in `requestContext.routeKey`.
    pub fn route_key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// Matches a request path against the path template; returns the path parameters.
    pub fn matches(&self, method: &str, path: &str) -> Option<Vec<(String, String)>> {
        if !self.method.eq_ignore_ascii_case(method) {
            return None;
        }
        let pattern: Vec<&str> = self.path.trim_matches('/').split('/').collect();
        let actual: Vec<&str> = path.trim_matches('/').split('/').collect();
        if pattern.len() != actual.len() {
            return None;
        }
        let mut params = Vec::new();
        for (p, a) in pattern.iter().zip(&actual) {
            match p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) if !a.is_empty() => params.push((name.to_owned(), (*a).to_owned())),
                Some(_) => return None,
                None if p == a => {}
                None => return None,
            }
        }
        Some(params)
    }
}

/// A function served on a function URL (no API Gateway, no JWT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionUrl {
    pub function: String,
    pub binary: String,
    pub auth_type: String,
}

/// The table's key, as the template declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableKey {
    pub attribute: String,
    /// `S`, `N` or `B`.
    pub attribute_type: String,
    pub billing_mode: String,
}

/// The bucket's CORS rule for browser uploads (origins are a parameter: not read here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketCors {
    pub methods: Vec<String>,
    pub headers: Vec<String>,
    pub exposed: Vec<String>,
    pub max_age: Option<u64>,
}

/// The parsed template.
pub struct Template {
    root: Value,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl Template {
    /// The repository's `template.yaml`.
    pub fn load_repo() -> Result<Self, TemplateError> {
        Self::load(&crate::moto::repo_root().join("template.yaml"))
    }

    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let root: Value = serde_yaml::from_str(text)?;
        if !root["Resources"].is_mapping() {
            return Err(TemplateError::Shape("no Resources".into()));
        }
        Ok(Template { root })
    }

    /// `(logical id, resource)` of every resource of `kind`.
    fn resources(&self, kind: &str) -> Vec<(String, &Value)> {
        self.root["Resources"]
            .as_mapping()
            .into_iter()
            .flatten()
            .filter(|(_, r)| r["Type"].as_str() == Some(kind))
            .filter_map(|(k, r)| Some((k.as_str()?.to_owned(), r)))
            .collect()
    }

    fn binary(function: &str, resource: &Value) -> Result<String, TemplateError> {
        resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| {
                TemplateError::Shape(format!("{function}: no Metadata.BuildProperties.Binary"))
            })
    }

    /// `(binary, CodeUri)` of every function whose `CodeUri` is a plain path (as in the
    /// template `sam build` writes, where it names the built function's folder).
    pub fn function_code(&self) -> Result<Vec<(String, String)>, TemplateError> {
        self.resources("AWS::Serverless::Function")
            .into_iter()
            .filter_map(|(name, f)| {
                let code = f["Properties"]["CodeUri"].as_str()?.to_owned();
                Some(Self::binary(&name, f).map(|b| (b, code)))
            })
            .collect()
    }

    /// The bootstrap binary of every function the template deploys.
    pub fn binaries(&self) -> Result<Vec<String>, TemplateError> {
        self.resources("AWS::Serverless::Function")
            .into_iter()
            .map(|(name, f)| Self::binary(&name, f))
            .collect()
    }

    /// Every `HttpApi` event of every function.
    pub fn routes(&self) -> Result<Vec<Route>, TemplateError> {
        let mut routes = Vec::new();
        for (name, f) in self.resources("AWS::Serverless::Function") {
            let Some(events) = f["Properties"]["Events"].as_mapping() else {
                continue;
            };
            for event in events.values() {
                if event["Type"].as_str() != Some("HttpApi") {
                    continue;
                }
                let p = &event["Properties"];
                let (Some(method), Some(path)) = (p["Method"].as_str(), p["Path"].as_str()) else {
                    return Err(TemplateError::Shape(format!(
                        "{name}: HttpApi event without a literal Method and Path"
                    )));
                };
                routes.push(Route {
                    method: method.to_ascii_uppercase(),
                    path: path.to_owned(),
                    function: name.clone(),
                    binary: Self::binary(&name, f)?,
                });
            }
        }
        Ok(routes)
    }

    /// Functions with a function URL.
    pub fn function_urls(&self) -> Result<Vec<FunctionUrl>, TemplateError> {
        self.resources("AWS::Serverless::Function")
            .into_iter()
            .filter(|(_, f)| f["Properties"]["FunctionUrlConfig"].is_mapping())
            .map(|(name, f)| {
                Ok(FunctionUrl {
                    binary: Self::binary(&name, f)?,
                    auth_type: f["Properties"]["FunctionUrlConfig"]["AuthType"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    function: name,
                })
            })
            .collect()
    }

    /// The one DynamoDB table's hash key and billing mode.
    pub fn table_key(&self) -> Result<TableKey, TemplateError> {
        let tables = self.resources("AWS::DynamoDB::Table");
        let [(name, table)] = tables.as_slice() else {
            return Err(TemplateError::Shape(format!(
                "expected one table, found {}",
                tables.len()
            )));
        };
        let p = &table["Properties"];
        let hash = p["KeySchema"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|k| k["KeyType"].as_str() == Some("HASH"))
            .and_then(|k| k["AttributeName"].as_str())
            .ok_or_else(|| TemplateError::Shape(format!("{name}: no HASH key")))?;
        let attribute_type = p["AttributeDefinitions"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|d| d["AttributeName"].as_str() == Some(hash))
            .and_then(|d| d["AttributeType"].as_str())
            .ok_or_else(|| TemplateError::Shape(format!("{name}: {hash} not defined")))?;
        Ok(TableKey {
            attribute: hash.to_owned(),
            attribute_type: attribute_type.to_owned(),
            billing_mode: p["BillingMode"]
                .as_str()
                .unwrap_or("PROVISIONED")
                .to_owned(),
        })
    }

    /// The object key wildcards of the EventBridge rule that sends S3 Object Created events to
    /// `binary` (the local cloud delivers only matching events, as the rule does).
    pub fn s3_event_key_patterns(&self, binary: &str) -> Result<Vec<String>, TemplateError> {
        let mut patterns = Vec::new();
        for (name, f) in self.resources("AWS::Serverless::Function") {
            if Self::binary(&name, f)? != binary {
                continue;
            }
            for event in f["Properties"]["Events"]
                .as_mapping()
                .into_iter()
                .flatten()
                .map(|(_, e)| e)
            {
                let pattern = &event["Properties"]["Pattern"];
                if event["Type"].as_str() != Some("EventBridgeRule")
                    || !strings(&pattern["source"]).iter().any(|s| s == "aws.s3")
                {
                    continue;
                }
                for k in pattern["detail"]["object"]["key"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                {
                    match k["wildcard"].as_str() {
                        Some(w) => patterns.push(w.to_owned()),
                        None => {
                            return Err(TemplateError::Shape(format!(
                                "{name}: only wildcard key filters are understood locally"
                            )))
                        }
                    }
                }
            }
        }
        if patterns.is_empty() {
            return Err(TemplateError::Shape(format!(
                "no S3 event rule for {binary}"
            )));
        }
        Ok(patterns)
    }

    /// The HTTP API's CORS configuration (methods, headers, max age; origins are the
    /// deployment's parameter, the local gateway allows loopback origins).
    pub fn api_cors(&self) -> Result<BucketCors, TemplateError> {
        let apis = self.resources("AWS::Serverless::HttpApi");
        let cors = apis
            .iter()
            .map(|(_, a)| &a["Properties"]["CorsConfiguration"])
            .find(|c| c.is_mapping())
            .ok_or_else(|| TemplateError::Shape("no HttpApi with a CorsConfiguration".into()))?;
        Ok(BucketCors {
            methods: strings(&cors["AllowMethods"]),
            headers: strings(&cors["AllowHeaders"]),
            exposed: strings(&cors["ExposeHeaders"]),
            max_age: cors["MaxAge"].as_u64(),
        })
    }

    /// The media bucket's (single) CORS rule.
    pub fn bucket_cors(&self) -> Result<BucketCors, TemplateError> {
        let buckets = self.resources("AWS::S3::Bucket");
        let rule = buckets
            .iter()
            .find_map(|(_, b)| {
                b["Properties"]["CorsConfiguration"]["CorsRules"]
                    .as_sequence()?
                    .first()
            })
            .ok_or_else(|| TemplateError::Shape("no bucket with a CORS rule".into()))?;
        Ok(BucketCors {
            methods: strings(&rule["AllowedMethods"]),
            headers: strings(&rule["AllowedHeaders"]),
            exposed: strings(&rule["ExposedHeaders"]),
            max_age: rule["MaxAge"].as_u64(),
        })
    }
}

/// EventBridge's `wildcard` filter: `*` matches any run of characters (slashes included).
pub fn wildcard_matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_template_gives_every_route_its_binary() {
        let t = Template::load_repo().unwrap();
        let mut keys: Vec<(String, String)> = t
            .routes()
            .unwrap()
            .into_iter()
            .map(|r| (r.route_key(), r.binary))
            .collect();
        keys.sort();
        let expected = [
            (
                "DELETE /v1/exercises/{id}/instructions/{step}/image",
                "upload-intake",
            ),
            ("DELETE /v1/exercises/{id}/video", "upload-intake"),
            (
                "DELETE /v1/exercises/{id}/video/captions/{lang}",
                "upload-intake",
            ),
            (
                "DELETE /v1/exercises/{id}/video/uploads/{upload_id}",
                "upload-intake",
            ),
            ("GET /v1/exercises/{id}/media", "playback"),
            ("GET /v1/exercises/{id}/video", "playback"),
            (
                "GET /v1/exercises/{id}/video/uploads/{upload_id}/parts",
                "upload-intake",
            ),
            ("GET /v1/media/bandwidth/stats", "playback-quality"),
            (
                "POST /v1/exercises/{id}/instructions/{step}/image",
                "upload-intake",
            ),
            ("POST /v1/exercises/{id}/thumbnail", "upload-intake"),
            ("POST /v1/exercises/{id}/video", "upload-intake"),
            (
                "POST /v1/exercises/{id}/video/captions/automatic",
                "upload-intake",
            ),
            (
                "POST /v1/exercises/{id}/video/uploads/{upload_id}/complete",
                "upload-intake",
            ),
            (
                "POST /v1/exercises/{id}/video/uploads/{upload_id}/parts",
                "upload-intake",
            ),
            ("POST /v1/media/sessions/{sid}/cmcd", "playback-quality"),
            (
                "PUT /v1/exercises/{id}/video/captions/{lang}",
                "upload-intake",
            ),
        ];
        assert_eq!(
            keys,
            expected.map(|(k, b)| (k.to_owned(), b.to_owned())).to_vec()
        );
        // Every binary the template names is a workspace package with that name.
        let root = crate::moto::repo_root();
        for r in t.routes().unwrap() {
            let manifest = root.join("functions").join(&r.binary).join("Cargo.toml");
            let text = std::fs::read_to_string(&manifest).unwrap();
            assert!(
                text.contains(&format!("name = \"{}\"", r.binary)),
                "{manifest:?}"
            );
        }
        let mut all = t.binaries().unwrap();
        all.sort();
        assert_eq!(
            all,
            [
                "bunny-webhook",
                "cdn-key-sync",
                "notify",
                "playback",
                "playback-quality",
                "reconcile",
                "transcode-complete",
                "transcode-start",
                "upload-intake"
            ]
        );
        assert_eq!(
            t.function_urls().unwrap(),
            [FunctionUrl {
                function: "BunnyWebhookFunction".into(),
                binary: "bunny-webhook".into(),
                auth_type: "NONE".into(),
            }]
        );
    }

    #[test]
    fn the_store_creates_the_table_the_template_declares() {
        let key = Template::load_repo().unwrap().table_key().unwrap();
        assert_eq!(key.attribute, exvid_shared::aws::dynamo::PARTITION_KEY);
        assert_eq!(key.attribute_type, "S");
        assert_eq!(key.billing_mode, "PAY_PER_REQUEST");
    }

    #[test]
    fn bucket_cors_allows_browser_puts() {
        let cors = Template::load_repo().unwrap().bucket_cors().unwrap();
        assert_eq!(cors.methods, ["PUT"]);
        assert_eq!(cors.headers, ["*"]);
        assert_eq!(cors.exposed, ["ETag"]);
    }

    #[test]
    fn s3_events_reach_transcode_start_for_originals_and_posters_only() {
        let p = Template::load_repo()
            .unwrap()
            .s3_event_key_patterns("transcode-start")
            .unwrap();
        let hit = |k: &str| p.iter().any(|w| wildcard_matches(w, k));
        assert!(hit("org-a/exercises/ex-1/video/original.mov"));
        assert!(hit("org-a/exercises/ex-1/thumbnail/poster.jpg"));
        assert!(!hit(
            "org-a/exercises/ex-1/video/u1/hls/original_360p_00001.ts"
        ));
        assert!(!hit("org-a/exercises/ex-1/video/u1/mp4/original_720p.mp4"));
    }

    #[test]
    fn wildcards_match_like_eventbridge() {
        assert!(wildcard_matches("*/a/*.x", "p/q/a/b.x"));
        assert!(wildcard_matches("abc", "abc"));
        assert!(!wildcard_matches("abc", "abcd"));
        assert!(wildcard_matches("a*", "a"));
        assert!(!wildcard_matches("*.jpg", "x.jpgx"));
    }

    #[test]
    fn api_cors_is_what_the_gateway_answers_preflights_with() {
        let cors = Template::load_repo().unwrap().api_cors().unwrap();
        assert!(cors.methods.iter().any(|m| m == "POST"), "{cors:?}");
        assert!(
            cors.headers.iter().any(|h| h == "authorization"),
            "{cors:?}"
        );
        assert_eq!(cors.max_age, Some(600));
    }

    #[test]
    fn path_templates_match_like_api_gateway() {
        let r = Route {
            method: "POST".into(),
            path: "/v1/exercises/{id}/instructions/{step}/image".into(),
            function: "F".into(),
            binary: "b".into(),
        };
        assert_eq!(
            r.matches("post", "/v1/exercises/ex-1/instructions/2/image"),
            Some(vec![
                ("id".into(), "ex-1".into()),
                ("step".into(), "2".into())
            ])
        );
        for (m, p) in [
            ("GET", "/v1/exercises/ex-1/instructions/2/image"),
            ("POST", "/v1/exercises/ex-1/instructions//image"),
            ("POST", "/v1/exercises/ex-1/instructions/2/image/x"),
            ("POST", "/v1/exercises/ex-1/video"),
        ] {
            assert_eq!(r.matches(m, p), None, "{m} {p}");
        }
    }

    #[test]
    fn broken_templates_are_errors_not_panics() {
        assert!(Template::parse("a: [").is_err());
        assert!(Template::parse("Resources: 3").is_err());
        let t = Template::parse(
            "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      Events:\n        E:\n          Type: HttpApi\n          Properties:\n            Method: GET\n            Path: !Ref P\n",
        )
        .unwrap();
        assert!(t.routes().is_err());
        assert!(t.table_key().is_err());
        assert!(t.bucket_cors().is_err());
        assert!(t.api_cors().is_err());
    }
}
