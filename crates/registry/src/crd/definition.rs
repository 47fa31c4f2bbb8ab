//! A CustomResourceDefinition read and checked: the parts serving needs
//! (names, scope, versions with their schema, subresources and printer
//! columns), or the field errors that make the object invalid (422).

use std::sync::Arc;

use kube_core::discovery::Scope;
use serde_json::Value;

use super::schema::{CompiledSchema, SchemaCache};
use crate::metadata::meta_str;
use crate::resource::{Object, ScalePaths};
use crate::table::ColumnSpec;
use crate::validation::{FieldError, FieldErrorKind, is_dns1123_label, is_dns1123_subdomain};

/// `spec.names` (and `status.acceptedNames`), with upstream defaults filled.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Names {
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
}

impl Names {
    pub fn from_value(v: Option<&Value>) -> Names {
        let s = |k: &str| {
            v.and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let list = |k: &str| -> Vec<String> {
            v.and_then(|v| v.get(k))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let kind = s("kind");
        let singular = Some(s("singular"))
            .filter(|x| !x.is_empty())
            .unwrap_or_else(|| kind.to_ascii_lowercase());
        let list_kind = Some(s("listKind"))
            .filter(|x| !x.is_empty())
            .unwrap_or_else(|| format!("{kind}List"));
        Names {
            plural: s("plural"),
            singular,
            kind,
            list_kind,
            short_names: list("shortNames"),
            categories: list("categories"),
        }
    }

    pub fn to_value(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("plural".into(), self.plural.clone().into());
        m.insert("singular".into(), self.singular.clone().into());
        m.insert("kind".into(), self.kind.clone().into());
        m.insert("listKind".into(), self.list_kind.clone().into());
        if !self.short_names.is_empty() {
            m.insert("shortNames".into(), self.short_names.clone().into());
        }
        if !self.categories.is_empty() {
            m.insert("categories".into(), self.categories.clone().into());
        }
        Value::Object(m)
    }
}

/// One entry of `spec.versions`.
#[derive(Debug)]
pub struct VersionDef {
    pub name: String,
    pub served: bool,
    pub storage: bool,
    pub deprecated: bool,
    pub deprecation_warning: Option<String>,
    pub schema: Arc<CompiledSchema>,
    pub status: bool,
    pub scale: Option<ScalePaths>,
    pub columns: Vec<ColumnSpec>,
}

/// A valid CRD's spec.
#[derive(Debug)]
pub struct Definition {
    pub group: String,
    pub scope: Scope,
    pub names: Arc<Names>,
    pub versions: Vec<VersionDef>,
}

impl Definition {
    pub fn storage_version(&self) -> &str {
        self.versions
            .iter()
            .find(|v| v.storage)
            .map_or("", |v| v.name.as_str())
    }

    /// Reads and validates a CRD object; schemas are compiled (or found)
    /// through `schemas`.
    pub fn parse(obj: &Object, schemas: &SchemaCache) -> Result<Definition, Vec<FieldError>> {
        let mut errs = Vec::new();
        let empty = Value::Object(Default::default());
        let spec = obj.get("spec").unwrap_or(&empty);
        let group = spec
            .get("group")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if group.is_empty() {
            errs.push(FieldError::required("spec.group", ""));
        } else if !is_dns1123_subdomain(&group) {
            errs.push(FieldError::invalid(
                "spec.group",
                group.clone(),
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            ));
        } else if !group.contains('.') {
            errs.push(FieldError::invalid(
                "spec.group",
                group.clone(),
                "should be a domain with at least one dot",
            ));
        }
        let names = Names::from_value(spec.get("names"));
        check_names(&names, "spec.names", &mut errs);
        let name = meta_str(obj, "name").unwrap_or("");
        let expected = format!("{}.{}", names.plural, group);
        if !names.plural.is_empty() && !group.is_empty() && name != expected {
            errs.push(FieldError::invalid(
                "metadata.name",
                name.to_owned(),
                "must be spec.names.plural+\".\"+spec.group",
            ));
        }
        let scope = match spec.get("scope").and_then(Value::as_str) {
            Some("Namespaced") => Scope::Namespaced,
            Some("Cluster") => Scope::Cluster,
            None | Some("") => {
                errs.push(FieldError::required("spec.scope", ""));
                Scope::Namespaced
            }
            Some(other) => {
                errs.push(FieldError {
                    kind: FieldErrorKind::NotSupported,
                    field: "spec.scope".into(),
                    value: Some(other.into()),
                    detail: "supported values: \"Cluster\", \"Namespaced\"".into(),
                });
                Scope::Namespaced
            }
        };
        if let Some(strategy) = spec
            .get("conversion")
            .and_then(|c| c.get("strategy"))
            .and_then(Value::as_str)
            .filter(|s| *s != "None")
        {
            errs.push(FieldError {
                kind: FieldErrorKind::NotSupported,
                field: "spec.conversion.strategy".into(),
                value: Some(strategy.into()),
                detail: "supported values: \"None\" (conversion webhooks are not supported)".into(),
            });
        }
        let versions = parse_versions(spec.get("versions"), schemas, &mut errs);
        if errs.is_empty() {
            Ok(Definition {
                group,
                scope,
                names: Arc::new(names),
                versions,
            })
        } else {
            Err(errs)
        }
    }
}

fn check_names(n: &Names, path: &str, errs: &mut Vec<FieldError>) {
    let label = |v: &str, field: &str, errs: &mut Vec<FieldError>| {
        if !is_dns1123_label(v) {
            errs.push(FieldError::invalid(
                format!("{path}.{field}"),
                v.to_owned(),
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
            ));
        }
    };
    if n.plural.is_empty() {
        errs.push(FieldError::required(format!("{path}.plural"), ""));
    } else {
        label(&n.plural, "plural", errs);
    }
    label(&n.singular, "singular", errs);
    if n.kind.is_empty() {
        errs.push(FieldError::required(format!("{path}.kind"), ""));
    } else if !is_kind(&n.kind) {
        errs.push(FieldError::invalid(
            format!("{path}.kind"),
            n.kind.clone(),
            "may have mixed case, but should otherwise match: [a-z]([-a-z0-9]*[a-z0-9])?",
        ));
    }
    if !is_kind(&n.list_kind) {
        errs.push(FieldError::invalid(
            format!("{path}.listKind"),
            n.list_kind.clone(),
            "may have mixed case, but should otherwise match: [a-z]([-a-z0-9]*[a-z0-9])?",
        ));
    }
    if !n.kind.is_empty() && n.kind == n.list_kind {
        errs.push(FieldError::invalid(
            format!("{path}.listKind"),
            n.list_kind.clone(),
            "kind and listKind may not be the same",
        ));
    }
    for (i, s) in n.short_names.iter().enumerate() {
        label(s, &format!("shortNames[{i}]"), errs);
    }
    for (i, c) in n.categories.iter().enumerate() {
        label(c, &format!("categories[{i}]"), errs);
    }
}

fn is_kind(k: &str) -> bool {
    is_dns1123_label(&k.to_ascii_lowercase())
}

fn parse_versions(
    versions: Option<&Value>,
    schemas: &SchemaCache,
    errs: &mut Vec<FieldError>,
) -> Vec<VersionDef> {
    let Some(list) = versions.and_then(Value::as_array).filter(|l| !l.is_empty()) else {
        errs.push(FieldError::required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let path = format!("spec.versions[{i}]");
        let name = v.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{path}.name"), ""));
        } else if !is_dns1123_label(name) {
            errs.push(FieldError::invalid(
                format!("{path}.name"),
                name.to_owned(),
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            ));
        } else if out.iter().any(|o: &VersionDef| o.name == name) {
            errs.push(FieldError {
                kind: FieldErrorKind::Duplicate,
                field: format!("{path}.name"),
                value: Some(name.into()),
                detail: String::new(),
            });
        }
        let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
        let schema_path = format!("{path}.schema.openAPIV3Schema");
        let schema = match v.get("schema").and_then(|s| s.get("openAPIV3Schema")) {
            None | Some(Value::Null) => {
                errs.push(FieldError::required(schema_path, "schemas are required"));
                None
            }
            Some(raw) => match schemas.get_or_compile(raw) {
                Ok(s) => Some(s),
                Err(schema_errs) => {
                    errs.extend(schema_errs.into_iter().map(|mut e| {
                        e.field = if e.field.is_empty() {
                            schema_path.clone()
                        } else {
                            format!("{schema_path}.{}", e.field)
                        };
                        e
                    }));
                    None
                }
            },
        };
        let subs = v.get("subresources");
        let status = subs
            .and_then(|s| s.get("status"))
            .is_some_and(|s| !s.is_null());
        let scale = subs
            .and_then(|s| s.get("scale"))
            .filter(|s| !s.is_null())
            .map(|s| parse_scale(s, &format!("{path}.subresources.scale"), errs));
        let columns = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|cols| {
                cols.iter()
                    .enumerate()
                    .map(|(j, c)| {
                        let col = ColumnSpec::from_crd_column(c);
                        let cpath = format!("{path}.additionalPrinterColumns[{j}]");
                        if col.name.is_empty() {
                            errs.push(FieldError::required(format!("{cpath}.name"), ""));
                        }
                        if col.json_path.is_empty() {
                            errs.push(FieldError::required(format!("{cpath}.jsonPath"), ""));
                        }
                        if !matches!(
                            col.type_.as_str(),
                            "integer" | "number" | "string" | "boolean" | "date"
                        ) {
                            errs.push(FieldError {
                                kind: FieldErrorKind::NotSupported,
                                field: format!("{cpath}.type"),
                                value: Some(col.type_.clone().into()),
                                detail: "supported values: \"boolean\", \"date\", \"integer\", \"number\", \"string\"".into(),
                            });
                        }
                        col
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(schema) = schema {
            out.push(VersionDef {
                name: name.to_owned(),
                served: flag("served"),
                storage: flag("storage"),
                deprecated: flag("deprecated"),
                deprecation_warning: v
                    .get("deprecationWarning")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                schema,
                status,
                scale,
                columns,
            });
        }
    }
    let storage = list
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if storage != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            versions.cloned().unwrap_or(Value::Null),
            "must have exactly one version marked as storage version",
        ));
    }
    if !list
        .iter()
        .any(|v| v.get("served").and_then(Value::as_bool) == Some(true))
    {
        errs.push(FieldError::invalid(
            "spec.versions",
            versions.cloned().unwrap_or(Value::Null),
            "must have at least one served version",
        ));
    }
    out
}

fn parse_scale(s: &Value, path: &str, errs: &mut Vec<FieldError>) -> ScalePaths {
    let get = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let spec = get("specReplicasPath");
    let status = get("statusReplicasPath");
    let selector = get("labelSelectorPath");
    if spec.is_empty() {
        errs.push(FieldError::required(format!("{path}.specReplicasPath"), ""));
    } else if !spec.starts_with(".spec.") {
        errs.push(FieldError::invalid(
            format!("{path}.specReplicasPath"),
            spec.clone(),
            "should be a json path under .spec",
        ));
    }
    if status.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.statusReplicasPath"),
            "",
        ));
    } else if !status.starts_with(".status.") {
        errs.push(FieldError::invalid(
            format!("{path}.statusReplicasPath"),
            status.clone(),
            "should be a json path under .status",
        ));
    }
    if !(selector.is_empty() || selector.starts_with(".spec.") || selector.starts_with(".status."))
    {
        errs.push(FieldError::invalid(
            format!("{path}.labelSelectorPath"),
            selector.clone(),
            "should be a json path under either .spec or .status",
        ));
    }
    ScalePaths {
        spec_replicas: spec,
        status_replicas: status,
        label_selector: Some(selector).filter(|s| !s.is_empty()),
    }
}
