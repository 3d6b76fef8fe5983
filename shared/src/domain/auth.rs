//! Who may do what: the principal from the API Gateway JWT authorizer's claims, and the access
//! rules of DESIGN as one pure function.
//!
//! - upload, delete: `admin` of the exercise's org, or `superadmin`; `global` scope: superadmin.
//! - read: any authenticated member of the scope's org; anyone authenticated for `global`.
//! - another org's exercise answers *not found*, never *forbidden* (no existence leak).

use std::collections::HashMap;

use crate::domain::ids::{IdError, OrgId, Scope};

/// Platform roles. Unknown role strings in a token are ignored, never an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Superadmin,
    Admin,
    Specialist,
    Patient,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s.trim().to_ascii_lowercase().as_str() {
            "superadmin" => Some(Role::Superadmin),
            "admin" => Some(Role::Admin),
            "specialist" => Some(Role::Specialist),
            "patient" => Some(Role::Patient),
            _ => None,
        }
    }
}

/// What a request wants to do with an exercise's video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Upload,
    Delete,
}

/// The authorizer's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allow,
    /// The caller may see the exercise but not do this (403).
    Forbidden,
    /// The caller may not know the exercise exists (404).
    NotFound,
}

/// Names of the claims that carry the org and the roles (configurable: `ORG_CLAIM`,
/// `ROLES_CLAIM`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    pub org: String,
    pub roles: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        ClaimNames {
            org: "org_id".into(),
            roles: "roles".into(),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub org: Option<OrgId>,
    pub roles: Vec<Role>,
}

/// Why claims do not make a principal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No authorizer claims, or no subject: the request is not authenticated (401).
    #[error("no authenticated subject in the request")]
    Unauthenticated,
    /// A claim is present but unusable (403).
    #[error("claim '{claim}' is invalid: {source}")]
    InvalidClaim {
        claim: String,
        #[source]
        source: IdError,
    },
}

/// Splits a multi-valued claim. API Gateway flattens JWT arrays into strings such as
/// `[admin specialist]`; other issuers send `admin,specialist` or a JSON array string.
pub fn claim_values(raw: &str) -> Vec<String> {
    let trimmed = raw.trim();
    if let Ok(list) = serde_json::from_str::<Vec<String>>(trimmed) {
        return list;
    }
    let inner = trimmed
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(trimmed);
    inner
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(|s| s.trim_matches('"'))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Principal {
    /// Builds the principal from the authorizer's (string-valued) claims.
    pub fn from_claims(
        claims: &HashMap<String, String>,
        names: &ClaimNames,
    ) -> Result<Principal, AuthError> {
        let subject = claims
            .get("sub")
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::Unauthenticated)?
            .to_owned();
        let org = match claims.get(&names.org).map(|s| s.trim()) {
            None | Some("") => None,
            Some(raw) => Some(OrgId::parse(raw).map_err(|source| AuthError::InvalidClaim {
                claim: names.org.clone(),
                source,
            })?),
        };
        let mut roles = Vec::new();
        if let Some(raw) = claims.get(&names.roles) {
            for role in claim_values(raw).iter().filter_map(|r| Role::parse(r)) {
                if !roles.contains(&role) {
                    roles.push(role);
                }
            }
        }
        Ok(Principal {
            subject,
            org,
            roles,
        })
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    fn is_member_of(&self, org: &OrgId) -> bool {
        self.org.as_ref() == Some(org)
    }
}

/// The access rules. `scope` is the exercise's stored scope, or for a first upload the scope
/// the request asks for.
pub fn authorize(principal: &Principal, action: Action, scope: &Scope) -> Access {
    if principal.has(Role::Superadmin) {
        return Access::Allow;
    }
    match (action, scope) {
        (Action::Read, Scope::Global) => Access::Allow,
        (Action::Upload | Action::Delete, Scope::Global) => Access::Forbidden,
        (_, Scope::Org(org)) if !principal.is_member_of(org) => Access::NotFound,
        (Action::Read, Scope::Org(_)) => Access::Allow,
        (Action::Upload | Action::Delete, Scope::Org(_)) => {
            if principal.has(Role::Admin) {
                Access::Allow
            } else {
                Access::Forbidden
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn principal(role: Option<&str>, org: &str) -> Principal {
        let mut c = vec![("sub", "user-1"), ("org_id", org)];
        if let Some(r) = role {
            c.push(("roles", r));
        }
        Principal::from_claims(&claims(&c), &ClaimNames::default()).unwrap()
    }

    /// Every role × scope × action, written out: the table is the specification.
    #[test]
    fn role_scope_action_table() {
        use Access::*;
        use Action::*;
        // (role, scope: "global" | "own" | "other", action, expected)
        let table: &[(Option<&str>, &str, Action, Access)] = &[
            (Some("superadmin"), "global", Read, Allow),
            (Some("superadmin"), "global", Upload, Allow),
            (Some("superadmin"), "global", Delete, Allow),
            (Some("superadmin"), "own", Read, Allow),
            (Some("superadmin"), "own", Upload, Allow),
            (Some("superadmin"), "own", Delete, Allow),
            (Some("superadmin"), "other", Read, Allow),
            (Some("superadmin"), "other", Upload, Allow),
            (Some("superadmin"), "other", Delete, Allow),
            (Some("admin"), "global", Read, Allow),
            (Some("admin"), "global", Upload, Forbidden),
            (Some("admin"), "global", Delete, Forbidden),
            (Some("admin"), "own", Read, Allow),
            (Some("admin"), "own", Upload, Allow),
            (Some("admin"), "own", Delete, Allow),
            (Some("admin"), "other", Read, NotFound),
            (Some("admin"), "other", Upload, NotFound),
            (Some("admin"), "other", Delete, NotFound),
            (Some("specialist"), "global", Read, Allow),
            (Some("specialist"), "global", Upload, Forbidden),
            (Some("specialist"), "global", Delete, Forbidden),
            (Some("specialist"), "own", Read, Allow),
            (Some("specialist"), "own", Upload, Forbidden),
            (Some("specialist"), "own", Delete, Forbidden),
            (Some("specialist"), "other", Read, NotFound),
            (Some("specialist"), "other", Upload, NotFound),
            (Some("specialist"), "other", Delete, NotFound),
            (Some("patient"), "global", Read, Allow),
            (Some("patient"), "global", Upload, Forbidden),
            (Some("patient"), "global", Delete, Forbidden),
            (Some("patient"), "own", Read, Allow),
            (Some("patient"), "own", Upload, Forbidden),
            (Some("patient"), "own", Delete, Forbidden),
            (Some("patient"), "other", Read, NotFound),
            (Some("patient"), "other", Upload, NotFound),
            (Some("patient"), "other", Delete, NotFound),
            // Authenticated, but no role this platform knows.
            (None, "global", Read, Allow),
            (None, "global", Upload, Forbidden),
            (None, "global", Delete, Forbidden),
            (None, "own", Read, Allow),
            (None, "own", Upload, Forbidden),
            (None, "own", Delete, Forbidden),
            (None, "other", Read, NotFound),
            (None, "other", Upload, NotFound),
            (None, "other", Delete, NotFound),
        ];
        assert_eq!(table.len(), 5 * 3 * 3);
        for (role, scope, action, expected) in table {
            let p = principal(*role, "org-a");
            let scope = match *scope {
                "global" => Scope::Global,
                "own" => Scope::parse("org-a").unwrap(),
                _ => Scope::parse("org-b").unwrap(),
            };
            assert_eq!(
                authorize(&p, *action, &scope),
                *expected,
                "{role:?} {action:?} {scope}"
            );
        }
    }

    #[test]
    fn a_principal_without_org_reads_only_global() {
        let p = Principal::from_claims(
            &claims(&[("sub", "u"), ("roles", "admin")]),
            &ClaimNames::default(),
        )
        .unwrap();
        assert_eq!(p.org, None);
        assert_eq!(authorize(&p, Action::Read, &Scope::Global), Access::Allow);
        assert_eq!(
            authorize(&p, Action::Read, &Scope::parse("org-a").unwrap()),
            Access::NotFound
        );
        assert_eq!(
            authorize(&p, Action::Upload, &Scope::parse("org-a").unwrap()),
            Access::NotFound
        );
    }

    #[test]
    fn multi_valued_role_claims_in_every_shape() {
        for raw in [
            "[admin specialist]",
            "admin,specialist",
            "admin specialist",
            "[\"admin\",\"specialist\"]",
            " [ admin  specialist ] ",
            "[admin specialist unknown-role]",
            "ADMIN, Specialist",
        ] {
            let p = principal(Some(raw), "org-a");
            assert_eq!(p.roles, vec![Role::Admin, Role::Specialist], "{raw}");
        }
        assert!(principal(Some("[]"), "org-a").roles.is_empty());
        assert!(principal(Some("superadmin-ish"), "org-a").roles.is_empty());
    }

    #[test]
    fn missing_subject_is_unauthenticated() {
        for c in [
            claims(&[]),
            claims(&[("org_id", "org-a"), ("roles", "admin")]),
            claims(&[("sub", "  ")]),
        ] {
            assert_eq!(
                Principal::from_claims(&c, &ClaimNames::default()),
                Err(AuthError::Unauthenticated)
            );
        }
    }

    #[test]
    fn hostile_org_claims_are_rejected() {
        for org in ["../x", "a/b", "global", "x\u{7f}"] {
            let err = Principal::from_claims(
                &claims(&[("sub", "u"), ("org_id", org)]),
                &ClaimNames::default(),
            )
            .unwrap_err();
            assert!(matches!(err, AuthError::InvalidClaim { .. }), "{org}");
        }
    }

    #[test]
    fn claim_names_are_configurable() {
        let names = ClaimNames {
            org: "custom:tenant".into(),
            roles: "cognito:groups".into(),
        };
        let p = Principal::from_claims(
            &claims(&[
                ("sub", "u"),
                ("custom:tenant", "org-z"),
                ("cognito:groups", "[superadmin]"),
            ]),
            &names,
        )
        .unwrap();
        assert_eq!(p.org, Some(OrgId::parse("org-z").unwrap()));
        assert!(p.has(Role::Superadmin));
    }
}
