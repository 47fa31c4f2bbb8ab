//! `/openapi/v2` as gnostic protobuf (`openapi_v2.Document`), which kubectl
//! asks for when v3 is unusable (validation fallback, `kubectl explain
//! --output=plaintext-openapiv2`). Field numbers are those of gnostic's
//! `openapiv2/OpenAPIv2.proto`; only the messages and fields our Swagger
//! documents use are declared (a decoder skips the rest).
//!
//! The conversion walks the Swagger JSON as gnostic's own compiler does:
//! `x-*` keys become `vendor_extension` entries whose value is YAML text
//! (JSON is YAML; kube-openapi `yaml.Unmarshal`s it), and `default`/`enum`/
//! `example` values are YAML text likewise.

// The oneofs mirror gnostic's messages one to one; their size does not
// matter for a document built once.
#![allow(clippy::large_enum_variant)]

use serde_json::{Map, Value};

/// The Content-Type of the protobuf answer. kubectl asks with the `@v1.0`
/// spelling, but `@` is not a media-type token character: Go's
/// `mime.ParseMediaType` rejects it, so client-go fails on a reply labelled
/// that way. Upstream answers with the dotted spelling, as here.
pub const V2_PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The media types that ask for protobuf (the `@` one is what kubectl sends).
pub const V2_PROTOBUF_ACCEPT: &[&str] = &[
    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    V2_PROTOBUF_CONTENT_TYPE,
];

#[derive(Clone, PartialEq, prost::Message)]
pub struct Document {
    #[prost(string, tag = "1")]
    pub swagger: String,
    #[prost(message, optional, tag = "2")]
    pub info: Option<Info>,
    #[prost(message, optional, tag = "8")]
    pub paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    pub definitions: Option<Definitions>,
    #[prost(message, repeated, tag = "12")]
    pub security: Vec<SecurityRequirement>,
    #[prost(message, optional, tag = "13")]
    pub security_definitions: Option<SecurityDefinitions>,
    #[prost(message, repeated, tag = "16")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Info {
    #[prost(string, tag = "1")]
    pub title: String,
    #[prost(string, tag = "2")]
    pub version: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(message, repeated, tag = "7")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    /// Field 1 (`google.protobuf.Any value`) is never set by gnostic's
    /// compiler for JSON input.
    #[prost(string, tag = "2")]
    pub yaml: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedAny {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Any>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Paths {
    #[prost(message, repeated, tag = "1")]
    pub vendor_extension: Vec<NamedAny>,
    #[prost(message, repeated, tag = "2")]
    pub path: Vec<NamedPathItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedPathItem {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<PathItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PathItem {
    #[prost(string, tag = "1")]
    pub r#ref: String,
    #[prost(message, optional, tag = "2")]
    pub get: Option<Operation>,
    #[prost(message, optional, tag = "3")]
    pub put: Option<Operation>,
    #[prost(message, optional, tag = "4")]
    pub post: Option<Operation>,
    #[prost(message, optional, tag = "5")]
    pub delete: Option<Operation>,
    #[prost(message, optional, tag = "8")]
    pub patch: Option<Operation>,
    #[prost(message, repeated, tag = "9")]
    pub parameters: Vec<ParametersItem>,
    #[prost(message, repeated, tag = "10")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Operation {
    #[prost(string, repeated, tag = "1")]
    pub tags: Vec<String>,
    #[prost(string, tag = "2")]
    pub summary: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "5")]
    pub operation_id: String,
    #[prost(string, repeated, tag = "6")]
    pub produces: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    pub consumes: Vec<String>,
    #[prost(message, repeated, tag = "8")]
    pub parameters: Vec<ParametersItem>,
    #[prost(message, optional, tag = "9")]
    pub responses: Option<Responses>,
    #[prost(string, repeated, tag = "10")]
    pub schemes: Vec<String>,
    #[prost(bool, tag = "11")]
    pub deprecated: bool,
    #[prost(message, repeated, tag = "13")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ParametersItem {
    #[prost(oneof = "parameters_item::Oneof", tags = "1, 2")]
    pub oneof: Option<parameters_item::Oneof>,
}

pub mod parameters_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        Parameter(super::Parameter),
        #[prost(message, tag = "2")]
        JsonReference(super::JsonReference),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct JsonReference {
    #[prost(string, tag = "1")]
    pub r#ref: String,
    #[prost(string, tag = "2")]
    pub description: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Parameter {
    #[prost(oneof = "parameter::Oneof", tags = "1, 2")]
    pub oneof: Option<parameter::Oneof>,
}

pub mod parameter {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        BodyParameter(super::BodyParameter),
        #[prost(message, tag = "2")]
        NonBodyParameter(super::NonBodyParameter),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BodyParameter {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub r#in: String,
    #[prost(bool, tag = "4")]
    pub required: bool,
    #[prost(message, optional, tag = "5")]
    pub schema: Option<Schema>,
    #[prost(message, repeated, tag = "6")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NonBodyParameter {
    #[prost(oneof = "non_body_parameter::Oneof", tags = "3, 4")]
    pub oneof: Option<non_body_parameter::Oneof>,
}

pub mod non_body_parameter {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "3")]
        QueryParameterSubSchema(super::QueryParameterSubSchema),
        #[prost(message, tag = "4")]
        PathParameterSubSchema(super::PathParameterSubSchema),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct QueryParameterSubSchema {
    #[prost(bool, tag = "1")]
    pub required: bool,
    #[prost(string, tag = "2")]
    pub r#in: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "6")]
    pub r#type: String,
    #[prost(string, tag = "7")]
    pub format: String,
    #[prost(bool, tag = "20")]
    pub unique_items: bool,
    #[prost(message, repeated, tag = "23")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PathParameterSubSchema {
    #[prost(bool, tag = "1")]
    pub required: bool,
    #[prost(string, tag = "2")]
    pub r#in: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "5")]
    pub r#type: String,
    #[prost(string, tag = "6")]
    pub format: String,
    #[prost(bool, tag = "19")]
    pub unique_items: bool,
    #[prost(message, repeated, tag = "22")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Responses {
    #[prost(message, repeated, tag = "1")]
    pub response_code: Vec<NamedResponseValue>,
    #[prost(message, repeated, tag = "2")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedResponseValue {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<ResponseValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseValue {
    #[prost(oneof = "response_value::Oneof", tags = "1, 2")]
    pub oneof: Option<response_value::Oneof>,
}

pub mod response_value {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        Response(super::Response),
        #[prost(message, tag = "2")]
        JsonReference(super::JsonReference),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Response {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(message, optional, tag = "2")]
    pub schema: Option<SchemaItem>,
    #[prost(message, repeated, tag = "5")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SchemaItem {
    #[prost(oneof = "schema_item::Oneof", tags = "1")]
    pub oneof: Option<schema_item::Oneof>,
}

pub mod schema_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        Schema(super::Schema),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Definitions {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Properties {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedSchema {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Schema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    pub schema: Vec<Schema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AdditionalPropertiesItem {
    #[prost(oneof = "additional_properties_item::Oneof", tags = "1, 2")]
    pub oneof: Option<additional_properties_item::Oneof>,
}

pub mod additional_properties_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        Schema(Box<super::Schema>),
        #[prost(bool, tag = "2")]
        Boolean(bool),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Schema {
    #[prost(string, tag = "1")]
    pub r#ref: String,
    #[prost(string, tag = "2")]
    pub format: String,
    #[prost(string, tag = "3")]
    pub title: String,
    #[prost(string, tag = "4")]
    pub description: String,
    #[prost(message, optional, tag = "5")]
    pub default: Option<Any>,
    #[prost(double, tag = "6")]
    pub multiple_of: f64,
    #[prost(double, tag = "7")]
    pub maximum: f64,
    #[prost(bool, tag = "8")]
    pub exclusive_maximum: bool,
    #[prost(double, tag = "9")]
    pub minimum: f64,
    #[prost(bool, tag = "10")]
    pub exclusive_minimum: bool,
    #[prost(int64, tag = "11")]
    pub max_length: i64,
    #[prost(int64, tag = "12")]
    pub min_length: i64,
    #[prost(string, tag = "13")]
    pub pattern: String,
    #[prost(int64, tag = "14")]
    pub max_items: i64,
    #[prost(int64, tag = "15")]
    pub min_items: i64,
    #[prost(bool, tag = "16")]
    pub unique_items: bool,
    #[prost(int64, tag = "17")]
    pub max_properties: i64,
    #[prost(int64, tag = "18")]
    pub min_properties: i64,
    #[prost(string, repeated, tag = "19")]
    pub required: Vec<String>,
    #[prost(message, repeated, tag = "20")]
    pub r#enum: Vec<Any>,
    #[prost(message, optional, tag = "21")]
    pub additional_properties: Option<AdditionalPropertiesItem>,
    #[prost(message, optional, tag = "22")]
    pub r#type: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    pub items: Option<ItemsItem>,
    #[prost(message, repeated, tag = "24")]
    pub all_of: Vec<Schema>,
    #[prost(message, optional, tag = "25")]
    pub properties: Option<Properties>,
    #[prost(string, tag = "26")]
    pub discriminator: String,
    #[prost(bool, tag = "27")]
    pub read_only: bool,
    #[prost(message, optional, tag = "30")]
    pub example: Option<Any>,
    #[prost(message, repeated, tag = "31")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SecurityRequirement {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedStringArray>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedStringArray {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<StringArray>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StringArray {
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SecurityDefinitions {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSecurityDefinitionsItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedSecurityDefinitionsItem {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<SecurityDefinitionsItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SecurityDefinitionsItem {
    #[prost(oneof = "security_definitions_item::Oneof", tags = "2")]
    pub oneof: Option<security_definitions_item::Oneof>,
}

pub mod security_definitions_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "2")]
        ApiKeySecurity(super::ApiKeySecurity),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ApiKeySecurity {
    #[prost(string, tag = "1")]
    pub r#type: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub r#in: String,
    #[prost(string, tag = "4")]
    pub description: String,
    #[prost(message, repeated, tag = "5")]
    pub vendor_extension: Vec<NamedAny>,
}

/// Encodes a Swagger 2.0 JSON document as `openapi_v2.Document`.
pub fn encode(doc: &Value) -> Vec<u8> {
    prost::Message::encode_to_vec(&document(doc))
}

fn s(m: &Map<String, Value>, k: &str) -> String {
    m.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn b(m: &Map<String, Value>, k: &str) -> bool {
    m.get(k).and_then(Value::as_bool).unwrap_or(false)
}

fn f(m: &Map<String, Value>, k: &str) -> f64 {
    m.get(k).and_then(Value::as_f64).unwrap_or(0.0)
}

fn i(m: &Map<String, Value>, k: &str) -> i64 {
    m.get(k).and_then(Value::as_i64).unwrap_or(0)
}

fn strings(m: &Map<String, Value>, k: &str) -> Vec<String> {
    m.get(k)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn obj(v: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    v.as_object().unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

fn any(v: &Value) -> Any {
    Any {
        yaml: v.to_string(),
    }
}

fn extensions(m: &Map<String, Value>) -> Vec<NamedAny> {
    m.iter()
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(k, v)| NamedAny {
            name: k.clone(),
            value: Some(any(v)),
        })
        .collect()
}

pub(super) fn document(v: &Value) -> Document {
    let m = obj(v);
    let info = m.get("info").map(|i| {
        let im = obj(i);
        Info {
            title: s(im, "title"),
            version: s(im, "version"),
            description: s(im, "description"),
            vendor_extension: extensions(im),
        }
    });
    let paths = m.get("paths").map(|p| {
        let pm = obj(p);
        Paths {
            vendor_extension: extensions(pm),
            path: pm
                .iter()
                .filter(|(k, _)| !k.starts_with("x-"))
                .map(|(k, v)| NamedPathItem {
                    name: k.clone(),
                    value: Some(path_item(v)),
                })
                .collect(),
        }
    });
    let definitions = m.get("definitions").map(|d| Definitions {
        additional_properties: named_schemas(d),
    });
    let security = m
        .get("security")
        .and_then(Value::as_array)
        .map(|reqs| {
            reqs.iter()
                .map(|r| SecurityRequirement {
                    additional_properties: obj(r)
                        .iter()
                        .map(|(k, v)| NamedStringArray {
                            name: k.clone(),
                            value: Some(StringArray {
                                value: v
                                    .as_array()
                                    .map(|a| {
                                        a.iter()
                                            .filter_map(|x| x.as_str().map(str::to_owned))
                                            .collect()
                                    })
                                    .unwrap_or_default(),
                            }),
                        })
                        .collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    let security_definitions = m.get("securityDefinitions").map(|sd| SecurityDefinitions {
        additional_properties: obj(sd)
            .iter()
            .map(|(k, v)| {
                let vm = obj(v);
                NamedSecurityDefinitionsItem {
                    name: k.clone(),
                    value: Some(SecurityDefinitionsItem {
                        oneof: Some(security_definitions_item::Oneof::ApiKeySecurity(
                            ApiKeySecurity {
                                r#type: s(vm, "type"),
                                name: s(vm, "name"),
                                r#in: s(vm, "in"),
                                description: s(vm, "description"),
                                vendor_extension: extensions(vm),
                            },
                        )),
                    }),
                }
            })
            .collect(),
    });
    Document {
        swagger: s(m, "swagger"),
        info,
        paths,
        definitions,
        security,
        security_definitions,
        vendor_extension: extensions(m),
    }
}

fn path_item(v: &Value) -> PathItem {
    let m = obj(v);
    let op = |k: &str| m.get(k).map(operation);
    PathItem {
        r#ref: s(m, "$ref"),
        get: op("get"),
        put: op("put"),
        post: op("post"),
        delete: op("delete"),
        patch: op("patch"),
        parameters: parameters(m.get("parameters")),
        vendor_extension: extensions(m),
    }
}

fn operation(v: &Value) -> Operation {
    let m = obj(v);
    Operation {
        tags: strings(m, "tags"),
        summary: s(m, "summary"),
        description: s(m, "description"),
        operation_id: s(m, "operationId"),
        produces: strings(m, "produces"),
        consumes: strings(m, "consumes"),
        parameters: parameters(m.get("parameters")),
        responses: m.get("responses").map(|r| {
            let rm = obj(r);
            Responses {
                response_code: rm
                    .iter()
                    .filter(|(k, _)| !k.starts_with("x-"))
                    .map(|(k, v)| NamedResponseValue {
                        name: k.clone(),
                        value: Some(response_value(v)),
                    })
                    .collect(),
                vendor_extension: extensions(rm),
            }
        }),
        schemes: strings(m, "schemes"),
        deprecated: b(m, "deprecated"),
        vendor_extension: extensions(m),
    }
}

fn response_value(v: &Value) -> ResponseValue {
    let m = obj(v);
    if m.contains_key("$ref") {
        return ResponseValue {
            oneof: Some(response_value::Oneof::JsonReference(JsonReference {
                r#ref: s(m, "$ref"),
                description: s(m, "description"),
            })),
        };
    }
    ResponseValue {
        oneof: Some(response_value::Oneof::Response(Response {
            description: s(m, "description"),
            schema: m.get("schema").map(|sc| SchemaItem {
                oneof: Some(schema_item::Oneof::Schema(schema(sc))),
            }),
            vendor_extension: extensions(m),
        })),
    }
}

fn parameters(v: Option<&Value>) -> Vec<ParametersItem> {
    let Some(Value::Array(ps)) = v else {
        return Vec::new();
    };
    ps.iter().map(parameter).collect()
}

fn parameter(v: &Value) -> ParametersItem {
    let m = obj(v);
    if m.contains_key("$ref") {
        return ParametersItem {
            oneof: Some(parameters_item::Oneof::JsonReference(JsonReference {
                r#ref: s(m, "$ref"),
                description: s(m, "description"),
            })),
        };
    }
    let p = match s(m, "in").as_str() {
        "body" => parameter::Oneof::BodyParameter(BodyParameter {
            description: s(m, "description"),
            name: s(m, "name"),
            r#in: s(m, "in"),
            required: b(m, "required"),
            schema: m.get("schema").map(schema),
            vendor_extension: extensions(m),
        }),
        "path" => parameter::Oneof::NonBodyParameter(NonBodyParameter {
            oneof: Some(non_body_parameter::Oneof::PathParameterSubSchema(
                PathParameterSubSchema {
                    required: b(m, "required"),
                    r#in: s(m, "in"),
                    description: s(m, "description"),
                    name: s(m, "name"),
                    r#type: s(m, "type"),
                    format: s(m, "format"),
                    unique_items: b(m, "uniqueItems"),
                    vendor_extension: extensions(m),
                },
            )),
        }),
        _ => parameter::Oneof::NonBodyParameter(NonBodyParameter {
            oneof: Some(non_body_parameter::Oneof::QueryParameterSubSchema(
                QueryParameterSubSchema {
                    required: b(m, "required"),
                    r#in: s(m, "in"),
                    description: s(m, "description"),
                    name: s(m, "name"),
                    r#type: s(m, "type"),
                    format: s(m, "format"),
                    unique_items: b(m, "uniqueItems"),
                    vendor_extension: extensions(m),
                },
            )),
        }),
    };
    ParametersItem {
        oneof: Some(parameters_item::Oneof::Parameter(Parameter {
            oneof: Some(p),
        })),
    }
}

fn named_schemas(v: &Value) -> Vec<NamedSchema> {
    obj(v)
        .iter()
        .map(|(k, v)| NamedSchema {
            name: k.clone(),
            value: Some(schema(v)),
        })
        .collect()
}

pub(super) fn schema(v: &Value) -> Schema {
    let Value::Object(m) = v else {
        return Schema::default();
    };
    Schema {
        r#ref: s(m, "$ref"),
        format: s(m, "format"),
        title: s(m, "title"),
        description: s(m, "description"),
        default: m.get("default").map(any),
        multiple_of: f(m, "multipleOf"),
        maximum: f(m, "maximum"),
        exclusive_maximum: b(m, "exclusiveMaximum"),
        minimum: f(m, "minimum"),
        exclusive_minimum: b(m, "exclusiveMinimum"),
        max_length: i(m, "maxLength"),
        min_length: i(m, "minLength"),
        pattern: s(m, "pattern"),
        max_items: i(m, "maxItems"),
        min_items: i(m, "minItems"),
        unique_items: b(m, "uniqueItems"),
        max_properties: i(m, "maxProperties"),
        min_properties: i(m, "minProperties"),
        required: strings(m, "required"),
        r#enum: m
            .get("enum")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(any).collect())
            .unwrap_or_default(),
        additional_properties: m
            .get("additionalProperties")
            .map(|a| AdditionalPropertiesItem {
                oneof: Some(match a {
                    Value::Bool(x) => additional_properties_item::Oneof::Boolean(*x),
                    _ => additional_properties_item::Oneof::Schema(Box::new(schema(a))),
                }),
            }),
        r#type: m.get("type").map(|t| TypeItem {
            value: match t {
                Value::String(x) => vec![x.clone()],
                Value::Array(xs) => xs
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            },
        }),
        items: m.get("items").map(|it| ItemsItem {
            schema: match it {
                Value::Array(xs) => xs.iter().map(schema).collect(),
                _ => vec![schema(it)],
            },
        }),
        all_of: m
            .get("allOf")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(schema).collect())
            .unwrap_or_default(),
        properties: m.get("properties").map(|p| Properties {
            additional_properties: named_schemas(p),
        }),
        discriminator: s(m, "discriminator"),
        read_only: b(m, "readOnly"),
        example: m.get("example").map(any),
        vendor_extension: extensions(m),
    }
}

/// The inverse of [`schema`] for what it encodes: a check that nothing is
/// lost on the way to protobuf.
#[cfg(test)]
pub(super) fn schema_to_json(s: &Schema) -> Value {
    use serde_json::json;
    let mut m = Map::new();
    let mut put_s = |k: &str, v: &str| {
        if !v.is_empty() {
            m.insert(k.into(), v.into());
        }
    };
    put_s("$ref", &s.r#ref);
    put_s("format", &s.format);
    put_s("title", &s.title);
    put_s("description", &s.description);
    put_s("pattern", &s.pattern);
    put_s("discriminator", &s.discriminator);
    let yaml = |a: &Any| serde_json::from_str::<Value>(&a.yaml).unwrap_or(Value::Null);
    if let Some(d) = &s.default {
        m.insert("default".into(), yaml(d));
    }
    if !s.required.is_empty() {
        m.insert("required".into(), json!(s.required));
    }
    if !s.r#enum.is_empty() {
        m.insert("enum".into(), s.r#enum.iter().map(yaml).collect());
    }
    if let Some(a) = &s.additional_properties {
        match &a.oneof {
            Some(additional_properties_item::Oneof::Boolean(x)) => {
                m.insert("additionalProperties".into(), (*x).into());
            }
            Some(additional_properties_item::Oneof::Schema(x)) => {
                m.insert("additionalProperties".into(), schema_to_json(x));
            }
            None => {}
        }
    }
    if let Some(t) = &s.r#type {
        m.insert(
            "type".into(),
            match t.value.as_slice() {
                [one] => one.clone().into(),
                many => json!(many),
            },
        );
    }
    if let Some(it) = &s.items {
        m.insert(
            "items".into(),
            match it.schema.as_slice() {
                [one] => schema_to_json(one),
                many => many.iter().map(schema_to_json).collect(),
            },
        );
    }
    if !s.all_of.is_empty() {
        m.insert(
            "allOf".into(),
            s.all_of.iter().map(schema_to_json).collect(),
        );
    }
    if let Some(p) = &s.properties {
        m.insert(
            "properties".into(),
            Value::Object(
                p.additional_properties
                    .iter()
                    .map(|n| {
                        (
                            n.name.clone(),
                            n.value.as_ref().map(schema_to_json).unwrap_or_default(),
                        )
                    })
                    .collect(),
            ),
        );
    }
    for (k, x) in [("uniqueItems", s.unique_items), ("readOnly", s.read_only)] {
        if x {
            m.insert(k.into(), true.into());
        }
    }
    for (k, x) in [
        ("maxLength", s.max_length),
        ("minLength", s.min_length),
        ("maxItems", s.max_items),
        ("minItems", s.min_items),
        ("maxProperties", s.max_properties),
        ("minProperties", s.min_properties),
    ] {
        if x != 0 {
            m.insert(k.into(), x.into());
        }
    }
    for e in &s.vendor_extension {
        if let Some(v) = &e.value {
            m.insert(e.name.clone(), yaml(v));
        }
    }
    Value::Object(m)
}
