//! CloudFormation's intrinsic functions, evaluated to local values: what a function's
//! environment in the template becomes once deployed, with this machine's stand-ins as the
//! resources. Enough of the language for environments (`Ref`, `Fn::GetAtt`, `Fn::Sub`,
//! `Fn::If`, `Fn::Join`, conditions and `{{resolve:secretsmanager:…}}`); anything else is an
//! error that names it, never a guess.

use std::collections::HashMap;

use serde_yaml::{Mapping, Value};

/// The deployment a template is evaluated against: what each resource and secret is locally.
pub trait Deployment {
    /// `Ref` of a resource (a table's name, a queue's URL …); `None` when not stood in.
    fn reference(&self, logical_id: &str, kind: &str) -> Option<String>;
    /// `Fn::GetAtt` of a resource; `None` when not stood in.
    fn attribute(&self, logical_id: &str, kind: &str, attribute: &str) -> Option<String>;
    /// `{{resolve:secretsmanager:NAME:SecretString:KEY}}`; `None` when the key is unknown.
    fn secret(&self, name: &str, key: &str) -> Option<String>;
}

/// A value that deploys, or `AWS::NoValue` (the property is left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    Value(String),
    NoValue,
}

/// Short-form tags (`!Ref X`, `!GetAtt A.B`, `!Sub …`) as the long form CloudFormation reads.
pub fn long_form(v: &Value) -> Value {
    match v {
        Value::Tagged(t) => {
            let name = t.tag.to_string();
            let name = name.trim_start_matches('!');
            let inner = long_form(&t.value);
            let (key, inner) = match (name, &inner) {
                ("Ref", _) | ("Condition", _) => (name.to_owned(), inner),
                ("GetAtt", Value::String(s)) => (
                    "Fn::GetAtt".to_owned(),
                    Value::Sequence(
                        s.splitn(2, '.')
                            .map(|p| Value::String(p.to_owned()))
                            .collect(),
                    ),
                ),
                _ => (format!("Fn::{name}"), inner),
            };
            let mut m = Mapping::new();
            m.insert(Value::String(key), inner);
            Value::Mapping(m)
        }
        Value::Mapping(m) => {
            Value::Mapping(m.iter().map(|(k, v)| (k.clone(), long_form(v))).collect())
        }
        Value::Sequence(s) => Value::Sequence(s.iter().map(long_form).collect()),
        other => other.clone(),
    }
}

/// A template (long form) with its parameters set, evaluated against a [`Deployment`].
pub struct Evaluator<'a> {
    template: &'a Value,
    parameters: HashMap<String, String>,
    pseudo: HashMap<&'static str, String>,
    deployment: &'a dyn Deployment,
}

/// Scalars as CloudFormation passes them to an environment (numbers and booleans as text).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The single `(function, argument)` of a `{"Fn::X": …}` mapping.
fn function_of(v: &Value) -> Option<(&str, &Value)> {
    let m = v.as_mapping()?;
    if m.len() != 1 {
        return None;
    }
    let (k, arg) = m.iter().next()?;
    let k = k.as_str()?;
    (k == "Ref" || k == "Condition" || k.starts_with("Fn::")).then_some((k, arg))
}

impl<'a> Evaluator<'a> {
    /// Parameters are the template's defaults overridden by `overrides`; one without either
    /// is an error, as it is for `sam deploy`. Pseudo parameters take local values.
    pub fn new(
        template: &'a Value,
        overrides: &HashMap<String, String>,
        stack_name: &str,
        deployment: &'a dyn Deployment,
    ) -> Result<Self, String> {
        let mut parameters = HashMap::new();
        for (name, p) in template["Parameters"].as_mapping().into_iter().flatten() {
            let name = name.as_str().unwrap_or_default().to_owned();
            let value = overrides
                .get(&name)
                .cloned()
                .or_else(|| scalar(&p["Default"]))
                .ok_or_else(|| format!("parameter {name} has no default and no value"))?;
            parameters.insert(name, value);
        }
        if let Some(unknown) = overrides.keys().find(|k| !parameters.contains_key(*k)) {
            return Err(format!("the template has no parameter {unknown}"));
        }
        let pseudo = HashMap::from([
            ("AWS::StackName", stack_name.to_owned()),
            ("AWS::Region", "eu-central-1".to_owned()),
            ("AWS::AccountId", "123456789012".to_owned()),
            ("AWS::Partition", "aws".to_owned()),
            ("AWS::URLSuffix", "amazonaws.com".to_owned()),
        ]);
        Ok(Evaluator {
            template,
            parameters,
            pseudo,
            deployment,
        })
    }

    fn kind_of(&self, logical_id: &str) -> Option<&str> {
        self.template["Resources"][logical_id]["Type"].as_str()
    }

    /// `Ref` of a parameter, pseudo parameter or resource.
    fn reference(&self, name: &str) -> Result<Resolved, String> {
        if name == "AWS::NoValue" {
            return Ok(Resolved::NoValue);
        }
        if let Some(v) = self.parameters.get(name) {
            return Ok(Resolved::Value(v.clone()));
        }
        if let Some(v) = self.pseudo.get(name) {
            return Ok(Resolved::Value(v.clone()));
        }
        let kind = self
            .kind_of(name)
            .ok_or_else(|| format!("Ref {name}: no such parameter or resource"))?;
        self.deployment
            .reference(name, kind)
            .map(Resolved::Value)
            .ok_or_else(|| format!("Ref {name} ({kind}) has no local stand-in"))
    }

    fn attribute(&self, logical_id: &str, attribute: &str) -> Result<String, String> {
        let kind = self
            .kind_of(logical_id)
            .ok_or_else(|| format!("GetAtt {logical_id}.{attribute}: no such resource"))?;
        self.deployment
            .attribute(logical_id, kind, attribute)
            .ok_or_else(|| {
                format!("GetAtt {logical_id}.{attribute} ({kind}) has no local stand-in")
            })
    }

    /// The named condition of the template's `Conditions`.
    pub fn condition(&self, name: &str) -> Result<bool, String> {
        let c = &self.template["Conditions"][name];
        if c.is_null() {
            return Err(format!("no condition {name}"));
        }
        self.truth(c)
    }

    fn truth(&self, v: &Value) -> Result<bool, String> {
        let list = |arg: &Value| -> Result<Vec<bool>, String> {
            arg.as_sequence()
                .ok_or("a condition function takes a list")?
                .iter()
                .map(|c| self.truth(c))
                .collect()
        };
        match function_of(v) {
            Some(("Condition", Value::String(name))) => self.condition(name),
            Some(("Fn::Equals", arg)) => {
                let items = arg.as_sequence().filter(|s| s.len() == 2);
                let [a, b] = items
                    .map(|s| [&s[0], &s[1]])
                    .ok_or("Fn::Equals takes two values")?;
                Ok(self.text(a)? == self.text(b)?)
            }
            Some(("Fn::Not", arg)) => match list(arg)?.as_slice() {
                [one] => Ok(!one),
                _ => Err("Fn::Not takes one condition".into()),
            },
            Some(("Fn::And", arg)) => Ok(list(arg)?.iter().all(|b| *b)),
            Some(("Fn::Or", arg)) => Ok(list(arg)?.iter().any(|b| *b)),
            _ => Err(format!("not a condition: {v:?}")),
        }
    }

    /// A value that must be present.
    fn text(&self, v: &Value) -> Result<String, String> {
        match self.eval(v)? {
            Resolved::Value(s) => Ok(s),
            Resolved::NoValue => Err("AWS::NoValue where a value is needed".into()),
        }
    }

    /// Evaluates `v` to what CloudFormation would deploy, dynamic references resolved.
    pub fn eval(&self, v: &Value) -> Result<Resolved, String> {
        let resolved = match function_of(v) {
            None => match scalar(v) {
                Some(s) => Resolved::Value(s),
                None => return Err(format!("not a scalar: {v:?}")),
            },
            Some(("Ref", Value::String(name))) => self.reference(name)?,
            Some(("Fn::GetAtt", arg)) => {
                let parts: Vec<String> = match arg {
                    Value::String(s) => s.splitn(2, '.').map(str::to_owned).collect(),
                    Value::Sequence(s) => s.iter().filter_map(scalar).collect(),
                    _ => Vec::new(),
                };
                match parts.as_slice() {
                    [id, attr] => Resolved::Value(self.attribute(id, attr)?),
                    _ => return Err(format!("Fn::GetAtt takes Resource.Attribute: {arg:?}")),
                }
            }
            Some(("Fn::If", arg)) => match arg.as_sequence().map(Vec::as_slice) {
                Some([Value::String(cond), then, otherwise]) => {
                    if self.condition(cond)? {
                        self.eval(then)?
                    } else {
                        self.eval(otherwise)?
                    }
                }
                _ => return Err("Fn::If takes [condition, then, else]".into()),
            },
            Some(("Fn::Sub", arg)) => Resolved::Value(self.sub(arg)?),
            Some(("Fn::Join", arg)) => match arg.as_sequence().map(Vec::as_slice) {
                Some([Value::String(sep), Value::Sequence(items)]) => {
                    let mut parts = Vec::new();
                    for item in items {
                        if let Resolved::Value(s) = self.eval(item)? {
                            parts.push(s);
                        }
                    }
                    Resolved::Value(parts.join(sep))
                }
                _ => return Err("Fn::Join takes [separator, [values]]".into()),
            },
            Some((other, _)) => return Err(format!("{other} is not evaluated locally")),
        };
        match resolved {
            Resolved::Value(s) => Ok(Resolved::Value(self.dynamic_references(&s)?)),
            none => Ok(none),
        }
    }

    fn sub(&self, arg: &Value) -> Result<String, String> {
        let (text, vars) = match arg {
            Value::String(s) => (s.as_str(), None),
            Value::Sequence(s) if s.len() == 2 && s[0].is_string() => {
                (s[0].as_str().unwrap_or_default(), s[1].as_mapping())
            }
            _ => return Err("Fn::Sub takes a string or [string, {variables}]".into()),
        };
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in Fn::Sub {text:?}"))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = vars.and_then(|m| m.get(name)) {
                out.push_str(&self.text(v)?);
            } else if let Some((id, attr)) = name.split_once('.') {
                out.push_str(&self.attribute(id, attr)?);
            } else {
                match self.reference(name)? {
                    Resolved::Value(s) => out.push_str(&s),
                    Resolved::NoValue => return Err(format!("${{{name}}} is AWS::NoValue")),
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// `{{resolve:secretsmanager:NAME:SecretString:KEY}}` as the deployment's secret.
    fn dynamic_references(&self, s: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(start) = rest.find("{{resolve:") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed dynamic reference in {s:?}"))?;
            let reference = &after[..end];
            let parts: Vec<&str> = reference.split(':').collect();
            let value = match parts.as_slice() {
                ["resolve", "secretsmanager", name, "SecretString", key, ..] => self
                    .deployment
                    .secret(name, key)
                    .ok_or_else(|| format!("secret {name} has no key {key} locally"))?,
                _ => {
                    return Err(format!(
                        "dynamic reference {{{{{reference}}}}} is not resolved locally"
                    ))
                }
            };
            out.push_str(&value);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;
    impl Deployment for Fake {
        fn reference(&self, id: &str, kind: &str) -> Option<String> {
            (kind == "AWS::DynamoDB::Table").then(|| format!("local-{id}"))
        }
        fn attribute(&self, id: &str, _: &str, attr: &str) -> Option<String> {
            (attr == "Arn").then(|| format!("arn:{id}"))
        }
        fn secret(&self, name: &str, key: &str) -> Option<String> {
            (key == "k").then(|| format!("{name}-secret"))
        }
    }

    const TEMPLATE: &str = r#"
Parameters:
  Provider: {Type: String, Default: bunny}
  Library: {Type: String, Default: ""}
  Secret: {Type: String, Default: app/dev}
  Needed: {Type: String}
Conditions:
  HasLibrary: !Not [!Equals [!Ref Library, ""]]
  Both: !And [!Condition HasLibrary, !Equals [!Ref Provider, bunny]]
Resources:
  Table: {Type: AWS::DynamoDB::Table}
  Queue: {Type: AWS::SQS::Queue}
"#;

    fn eval(overrides: &[(&str, &str)], expr: &str) -> Result<Resolved, String> {
        let t = long_form(&serde_yaml::from_str(TEMPLATE).unwrap());
        let o = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let e = Evaluator::new(&t, &o, "stack", &Fake)?;
        e.eval(&long_form(&serde_yaml::from_str(expr).unwrap()))
    }

    fn value(s: &str) -> Result<Resolved, String> {
        Ok(Resolved::Value(s.into()))
    }

    #[test]
    fn refs_subs_conditions_and_secrets() {
        let n = [("Needed", "x")];
        assert_eq!(eval(&n, "!Ref Table"), value("local-Table"));
        assert_eq!(eval(&n, "!GetAtt Table.Arn"), value("arn:Table"));
        assert_eq!(eval(&n, "42"), value("42"));
        assert_eq!(
            eval(
                &n,
                "!Sub '${AWS::StackName}-${Table}-${Table.Arn}-${!Keep}'"
            ),
            value("stack-local-Table-arn:Table-${Keep}")
        );
        assert_eq!(
            eval(&n, "!If [HasLibrary, !Ref Library, !Ref AWS::NoValue]"),
            Ok(Resolved::NoValue)
        );
        let lib = [("Needed", "x"), ("Library", "7")];
        assert_eq!(eval(&lib, "!If [Both, !Ref Library, none]"), value("7"));
        assert_eq!(
            eval(
                &n,
                "!Sub '{{resolve:secretsmanager:${Secret}:SecretString:k}}'"
            ),
            value("app/dev-secret")
        );
        assert_eq!(
            eval(&n, "'{{resolve:secretsmanager:app/dev:SecretString:k}}'"),
            value("app/dev-secret")
        );
    }

    #[test]
    fn what_cannot_be_evaluated_is_named() {
        let n = [("Needed", "x")];
        assert!(eval(&[], "1").unwrap_err().contains("Needed"));
        assert!(eval(&[("Needed", "x"), ("Nope", "1")], "1")
            .unwrap_err()
            .contains("Nope"));
        assert!(eval(&n, "!Ref Queue")
            .unwrap_err()
            .contains("AWS::SQS::Queue"));
        assert!(eval(&n, "!Ref Missing").unwrap_err().contains("Missing"));
        assert!(eval(&n, "!GetAtt Queue.QueueName")
            .unwrap_err()
            .contains("Queue.QueueName"));
        assert!(eval(&n, "!Select [0, [a]]")
            .unwrap_err()
            .contains("Fn::Select"));
        assert!(
            eval(&n, "'{{resolve:secretsmanager:a:SecretString:other}}'")
                .unwrap_err()
                .contains("other")
        );
        assert!(eval(&n, "'{{resolve:ssm:/x}}'")
            .unwrap_err()
            .contains("ssm"));
    }
}
