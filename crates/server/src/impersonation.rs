//! Impersonation (`kubectl --as`, `--as-group`, `--as-uid`, helm
//! `--kube-as-user`): the `Impersonate-User`, `Impersonate-Group`,
//! `Impersonate-Uid` and `Impersonate-Extra-<key>` headers make the rest of
//! the request run as another identity, once the workspace's RBAC allows the
//! requester the `impersonate` verb on each part, as upstream's filter
//! checks them: `users` (or `serviceaccounts` in the account's namespace
//! for `system:serviceaccount:<ns>:<name>`) and `groups` in the core group,
//! `uids` and `userextras/<key>` in `authentication.k8s.io`.
//!
//! Never ignored: a server that dropped these headers would run
//! `kubectl --as=bob delete ...` with the caller's own rights, and
//! `kubectl auth can-i --as=bob` would answer for the caller.
//!
//! The impersonated user keeps the requester's workspace scope (a token
//! bound to one workspace stays there), and needs an access grant in the
//! workspace like any user.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use registry::rbac::{Attributes, Decision, RbacPolicy};

use crate::auth::User;
use crate::auth::user::{ANONYMOUS, SYSTEM_AUTHENTICATED, SYSTEM_UNAUTHENTICATED};
use crate::error::ApiError;

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";
const SA_PREFIX: &str = "system:serviceaccount:";
const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";

/// The identity a request asks to act as.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Requested {
    user: String,
    groups: Vec<String>,
    groups_given: bool,
    uid: Option<String>,
    extra: BTreeMap<String, Vec<String>>,
}

fn text(v: &axum::http::HeaderValue, header: &str) -> Result<String, ApiError> {
    v.to_str()
        .map(str::to_owned)
        .map_err(|_| ApiError::bad_request(format!("the {header} header is not valid text")))
}

/// Reads the impersonation headers; `None` when there are none. Groups,
/// a uid or extras without a user are refused (400; upstream answers 500
/// for this client mistake).
pub fn requested(headers: &HeaderMap) -> Result<Option<Requested>, ApiError> {
    let mut r = Requested::default();
    if let Some(v) = headers.get(USER) {
        r.user = text(v, "Impersonate-User")?;
    }
    for v in headers.get_all(GROUP) {
        r.groups.push(text(v, "Impersonate-Group")?);
        r.groups_given = true;
    }
    if let Some(v) = headers.get(UID) {
        r.uid = Some(text(v, "Impersonate-Uid")?).filter(|u| !u.is_empty());
    }
    for (name, v) in headers {
        // Header names arrive lower-cased.
        let Some(key) = name.as_str().strip_prefix(EXTRA_PREFIX) else {
            continue;
        };
        // Keys that are not valid header names travel percent-encoded.
        let key = percent_encoding::percent_decode_str(key)
            .decode_utf8()
            .map_err(|_| ApiError::bad_request(format!("the {name} header's key is not UTF-8")))?
            .into_owned();
        r.extra
            .entry(key)
            .or_default()
            .push(text(v, name.as_str())?);
    }
    if r.user.is_empty() {
        if r.groups_given || r.uid.is_some() || !r.extra.is_empty() {
            return Err(ApiError::bad_request(
                "impersonating groups, a uid or extra fields needs Impersonate-User as well",
            ));
        }
        return Ok(None);
    }
    Ok(Some(r))
}

/// `system:serviceaccount:<ns>:<name>` split, as upstream's SplitUsername.
fn service_account(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix(SA_PREFIX)?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

fn allow(policy: &RbacPolicy, attrs: &Attributes) -> Result<(), ApiError> {
    match policy.authorize(attrs) {
        Decision::Allow => Ok(()),
        Decision::Deny(reason) => Err(attrs.forbidden(&reason).into()),
    }
}

/// Checks each part of `want` against the workspace's `policy` for
/// `requester`, then returns the user the request runs as.
pub fn impersonate(
    policy: &RbacPolicy,
    requester: &User,
    want: Requested,
) -> Result<User, ApiError> {
    let me = requester.user_info();
    let sa = service_account(&want.user);
    let user_check = match sa {
        Some((ns, name)) => Attributes::resource(&me, "impersonate", "", "serviceaccounts")
            .namespace(ns)
            .name(name),
        None => Attributes::resource(&me, "impersonate", "", "users").name(&want.user),
    };
    allow(policy, &user_check)?;
    for g in &want.groups {
        allow(
            policy,
            &Attributes::resource(&me, "impersonate", "", "groups").name(g),
        )?;
    }
    if let Some(uid) = &want.uid {
        allow(
            policy,
            &Attributes::resource(&me, "impersonate", AUTHENTICATION_GROUP, "uids").name(uid),
        )?;
    }
    for (key, values) in &want.extra {
        for v in values {
            allow(
                policy,
                &Attributes::resource(&me, "impersonate", AUTHENTICATION_GROUP, "userextras")
                    .subresource(key)
                    .name(v),
            )?;
        }
    }
    let mut groups = want.groups;
    if !want.groups_given
        && let Some((ns, _)) = sa
    {
        groups.push("system:serviceaccounts".to_owned());
        groups.push(format!("system:serviceaccounts:{ns}"));
    }
    // Upstream: every impersonated user but the anonymous one is in
    // system:authenticated unless system:unauthenticated was asked for;
    // the anonymous one is in system:unauthenticated.
    let has = |groups: &[String], g: &str| groups.iter().any(|x| x == g);
    if want.user != ANONYMOUS {
        if !has(&groups, SYSTEM_AUTHENTICATED) && !has(&groups, SYSTEM_UNAUTHENTICATED) {
            groups.push(SYSTEM_AUTHENTICATED.to_owned());
        }
    } else if !has(&groups, SYSTEM_UNAUTHENTICATED) {
        groups.push(SYSTEM_UNAUTHENTICATED.to_owned());
    }
    Ok(User {
        name: want.user,
        uid: want.uid.unwrap_or_default(),
        groups,
        extra: want.extra,
        workspaces: requester.workspaces.clone(),
        service_account: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn headers_are_read_like_upstream() {
        assert_eq!(requested(&headers(&[])).expect("none"), None);
        let r = requested(&headers(&[
            ("Impersonate-User", "bob"),
            ("Impersonate-Group", "dev"),
            ("Impersonate-Group", "ops"),
            ("Impersonate-Uid", "u-1"),
            ("Impersonate-Extra-Scopes", "a"),
            ("Impersonate-Extra-Scopes", "b"),
            ("Impersonate-Extra-example.com%2fteam", "x"),
        ]))
        .expect("ok")
        .expect("some");
        assert_eq!(r.user, "bob");
        assert_eq!(r.groups, ["dev", "ops"]);
        assert_eq!(r.uid.as_deref(), Some("u-1"));
        assert_eq!(r.extra["scopes"], ["a", "b"]);
        assert_eq!(r.extra["example.com/team"], ["x"]);
        for lone in [
            ("Impersonate-Group", "dev"),
            ("Impersonate-Uid", "u"),
            ("Impersonate-Extra-k", "v"),
        ] {
            let e = requested(&headers(&[lone])).expect_err("needs a user");
            assert_eq!(e.0.code(), 400, "{lone:?}");
        }
    }

    #[test]
    fn service_account_names_split_like_upstream() {
        assert_eq!(
            service_account("system:serviceaccount:ns:sa"),
            Some(("ns", "sa"))
        );
        for not in [
            "system:serviceaccount:ns",
            "system:serviceaccount::sa",
            "system:serviceaccount:ns:",
            "system:serviceaccount:a:b:c",
            "bob",
        ] {
            assert_eq!(service_account(not), None, "{not}");
        }
    }
}
