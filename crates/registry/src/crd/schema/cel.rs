//! `x-kubernetes-validations`: CEL rules compiled once with the schema and
//! evaluated on create and update (`oldSelf` transition rules on update).
//!
//! The interpreter is the `cel` crate with the Kubernetes library functions
//! from `kube-cel`. Its evaluation cannot be metered step by step, so cost is
//! bounded before a rule runs: a rule's cost is estimated from the size of
//! the value it sees and how deeply its comprehensions nest, and a request
//! has a total budget (upstream's per-call and per-request limits have the
//! same magnitudes).

use std::collections::HashMap;
use std::sync::Arc;

use kube_cel::KubeCelExt;
use kube_cel::cel::common::ast::{EntryExpr, Expr, IdedExpr};
use kube_cel::cel::objects::{Key, Map as CelMap, OptionalValue};
use kube_cel::cel::{self, Context, Program};
use serde_json::{Map, Value};

use super::formats::{Format, parse_duration_secs};
use super::structural::{ListType, Node, Type};
use crate::validation::{FieldError, FieldErrorKind};

/// Estimated cost one rule evaluation may take (upstream `PerCallLimit`).
pub(crate) const PER_CALL_LIMIT: u64 = 1_000_000;
/// Estimated cost all rules of one request may take together (upstream
/// `RuntimeCELCostBudget`).
pub(crate) const REQUEST_BUDGET: u64 = 10_000_000;

/// Where a node sits, as far as `oldSelf` is concerned: a transition rule
/// needs an old value to compare with, which only exists where old and new
/// values correlate (object fields, map values, `x-kubernetes-list-type:
/// map` elements; not atomic or set list elements).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RuleContext {
    correlatable: bool,
}

impl RuleContext {
    pub(crate) fn root() -> Self {
        RuleContext { correlatable: true }
    }
    pub(crate) fn field(self) -> Self {
        self
    }
    pub(crate) fn correlated_item(self) -> Self {
        self
    }
    pub(crate) fn uncorrelated_item(self) -> Self {
        RuleContext {
            correlatable: false,
        }
    }
}

/// One compiled rule.
#[derive(Debug)]
pub(crate) struct CelRule {
    source: String,
    program: Program,
    message: Option<String>,
    message_expression: Option<Program>,
    reason: FieldErrorKind,
    /// `fieldPath`, as field names below the node.
    field_path: Vec<String>,
    transition: bool,
    optional_old_self: bool,
    /// How deeply comprehensions nest (0 = none).
    depth: u32,
    /// How deep the expression tree is (the interpreter's recursion).
    pub(crate) tree_depth: usize,
}

const RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// A property name as CEL sees it (upstream's escaping), or `None` when it
/// cannot be spelled in CEL at all.
pub(crate) fn escape(name: &str) -> Option<String> {
    if RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("__") {
            out.push_str("__underscores__");
            rest = r;
            continue;
        }
        let c = rest.chars().next()?;
        match c {
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c if c.is_ascii_alphanumeric() || c == '_' => out.push(c),
            _ => return None,
        }
        rest = &rest[c.len_utf8()..];
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    Some(out)
}

/// Identifiers a rule may use besides comprehension variables (type names
/// such as `int` are not: the interpreter has no `type()`).
const KNOWN_IDENTS: &[&str] = &[
    "self",
    "oldSelf",
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "duration",
    "timestamp",
];

// Comprehension nesting depth and identifiers used but never bound.
fn analyse(e: &IdedExpr, bound: &mut Vec<String>, unbound: &mut Vec<String>) -> u32 {
    match &e.expr {
        Expr::Ident(name) => {
            if !KNOWN_IDENTS.contains(&name.as_str())
                && !bound.contains(name)
                && !unbound.contains(name)
            {
                unbound.push(name.clone());
            }
            0
        }
        Expr::Call(c) => {
            // `sets.contains(..)`, `math.greatest(..)`: a bare identifier as
            // call target names a function namespace, not a variable.
            let mut d = match c.target.as_deref() {
                Some(IdedExpr {
                    expr: Expr::Ident(_),
                    ..
                })
                | None => 0,
                Some(t) => analyse(t, bound, unbound),
            };
            for a in &c.args {
                d = d.max(analyse(a, bound, unbound));
            }
            d
        }
        Expr::Comprehension(c) => {
            let range = analyse(&c.iter_range, bound, unbound);
            let init = analyse(&c.accu_init, bound, unbound);
            let n = bound.len();
            bound.push(c.iter_var.clone());
            if let Some(v) = &c.iter_var2 {
                bound.push(v.clone());
            }
            bound.push(c.accu_var.clone());
            let body = analyse(&c.loop_cond, bound, unbound)
                .max(analyse(&c.loop_step, bound, unbound))
                .max(analyse(&c.result, bound, unbound));
            bound.truncate(n);
            range.max(init).max(body + 1)
        }
        Expr::List(l) => l
            .elements
            .iter()
            .map(|x| analyse(x, bound, unbound))
            .max()
            .unwrap_or(0),
        Expr::Map(m) => entries(&m.entries, bound, unbound),
        Expr::Struct(s) => entries(&s.entries, bound, unbound),
        Expr::Select(s) => analyse(&s.operand, bound, unbound),
        Expr::Literal(_) | Expr::Unspecified => 0,
    }
}

fn entries(
    es: &[kube_cel::cel::common::ast::IdedEntryExpr],
    bound: &mut Vec<String>,
    unbound: &mut Vec<String>,
) -> u32 {
    es.iter()
        .map(|e| match &e.expr {
            EntryExpr::MapEntry(m) => {
                analyse(&m.key, bound, unbound).max(analyse(&m.value, bound, unbound))
            }
            EntryExpr::StructField(f) => analyse(&f.value, bound, unbound),
        })
        .max()
        .unwrap_or(0)
}

/// Longest rule or messageExpression accepted.
const MAX_EXPRESSION_LEN: usize = 4096;
/// Deepest expression tree accepted. The interpreter recurses per level, so
/// this bounds the stack a rule can take when it runs.
const MAX_AST_DEPTH: usize = 64;
/// Stack for parsing: the generated parser recurses with large frames, so a
/// deeply nested rule would overflow a worker thread's stack.
const PARSE_STACK: usize = 32 << 20;
/// Rules run with at least this much stack left...
pub(crate) const EVAL_RED_ZONE: usize = 4 << 20;
/// ...or this much when no rule's tree is deeper than [`SHALLOW_TREE`]
/// (typical rules; a tokio worker's 2 MiB stack then needs no new one).
pub(crate) const SHALLOW_RED_ZONE: usize = 1 << 20;
pub(crate) const SHALLOW_TREE: usize = 12;
/// ...else on a fresh stack of this size.
pub(crate) const EVAL_STACK: usize = 16 << 20;

fn ast_depth(e: &IdedExpr) -> usize {
    let sub = match &e.expr {
        Expr::Call(c) => c
            .target
            .iter()
            .map(|t| ast_depth(t))
            .chain(c.args.iter().map(ast_depth))
            .max()
            .unwrap_or(0),
        Expr::Comprehension(c) => [
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ]
        .into_iter()
        .map(ast_depth)
        .max()
        .unwrap_or(0),
        Expr::List(l) => l.elements.iter().map(ast_depth).max().unwrap_or(0),
        Expr::Map(m) => entries_depth(&m.entries),
        Expr::Struct(st) => entries_depth(&st.entries),
        Expr::Select(sel) => ast_depth(&sel.operand),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => 0,
    };
    sub + 1
}

fn entries_depth(es: &[kube_cel::cel::common::ast::IdedEntryExpr]) -> usize {
    es.iter()
        .map(|e| match &e.expr {
            EntryExpr::MapEntry(m) => ast_depth(&m.key).max(ast_depth(&m.value)),
            EntryExpr::StructField(f) => ast_depth(&f.value),
        })
        .max()
        .unwrap_or(0)
}

fn compile_program(src: &str) -> Result<(Program, u32), String> {
    if src.len() > MAX_EXPRESSION_LEN {
        return Err(format!(
            "expression is longer than {MAX_EXPRESSION_LEN} bytes"
        ));
    }
    // Parsed, checked and (if rejected) dropped on a stack of known size.
    stacker::grow(PARSE_STACK, || check_program(src))
}

fn check_program(src: &str) -> Result<(Program, u32), String> {
    let program = Program::compile(src).map_err(|e| e.to_string())?;
    if ast_depth(program.expression()) > MAX_AST_DEPTH {
        return Err(format!(
            "expression nests deeper than {MAX_AST_DEPTH} levels"
        ));
    }
    let mut unbound = Vec::new();
    let depth = analyse(program.expression(), &mut Vec::new(), &mut unbound);
    if let Some(name) = unbound.first() {
        return Err(format!("undeclared reference to '{name}'"));
    }
    Ok((program, depth))
}

// `.a.b`, `['a.b']`, mixed; names must be declared below `node`.
fn parse_field_path(fp: &str, node: &Node) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = fp;
    let mut cur = node;
    while !rest.is_empty() {
        let name;
        if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']")?;
            name = r[..end].to_string();
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            name = r[..end].to_string();
            rest = &r[end..];
        } else {
            return None;
        }
        if name.is_empty() {
            return None;
        }
        cur = cur.child(&name)?;
        out.push(name);
    }
    (!out.is_empty()).then_some(out)
}

/// Compiles a node's `x-kubernetes-validations`; problems are appended to
/// `errs` with paths under `path`.
pub(crate) fn compile_rules(
    v: &Value,
    node: &Node,
    ctx: RuleContext,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Vec<CelRule> {
    let Some(list) = v.as_array() else {
        errs.push(FieldError::invalid(path, v.clone(), "must be a list"));
        return Vec::new();
    };
    let mut rules = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let rpath = format!("{path}[{i}]");
        let Some(obj) = r.as_object() else {
            errs.push(FieldError::invalid(&rpath, r.clone(), "must be an object"));
            continue;
        };
        let Some(src) = obj
            .get("rule")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
        else {
            errs.push(FieldError::required(format!("{rpath}.rule"), ""));
            continue;
        };
        let (program, depth) = match compile_program(src) {
            Ok(p) => p,
            Err(e) => {
                errs.push(FieldError::invalid(
                    format!("{rpath}.rule"),
                    src,
                    format!("compilation failed: {e}"),
                ));
                continue;
            }
        };
        let tree_depth = ast_depth(program.expression());
        let transition = program.references().has_variable("oldSelf");
        if transition && !ctx.correlatable {
            errs.push(FieldError::invalid(
                format!("{rpath}.rule"),
                src,
                "oldSelf cannot be used on the uncorrelatable portion of the schema within an atomic or set list",
            ));
            continue;
        }
        let optional_old_self = obj.get("optionalOldSelf").and_then(Value::as_bool) == Some(true);
        if optional_old_self && !transition {
            errs.push(FieldError::forbidden(
                format!("{rpath}.optionalOldSelf"),
                "may not be set if oldSelf is not used in rule",
            ));
        }
        let message = obj
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string);
        if message
            .as_deref()
            .is_some_and(|m| m.trim().is_empty() || m.contains('\n'))
        {
            errs.push(FieldError::invalid(
                format!("{rpath}.message"),
                message.clone().unwrap_or_default(),
                "message must be non-empty and may not contain line breaks",
            ));
        }
        let message_expression = match obj.get("messageExpression").and_then(Value::as_str) {
            None => None,
            Some(m) => match compile_program(m) {
                Ok((p, _)) => Some(p),
                Err(e) => {
                    errs.push(FieldError::invalid(
                        format!("{rpath}.messageExpression"),
                        m,
                        format!("messageExpression compilation failed: {e}"),
                    ));
                    None
                }
            },
        };
        let reason = match obj.get("reason").and_then(Value::as_str) {
            None | Some("FieldValueInvalid") => FieldErrorKind::Invalid,
            Some("FieldValueForbidden") => FieldErrorKind::Forbidden,
            Some("FieldValueRequired") => FieldErrorKind::Required,
            Some("FieldValueDuplicate") => FieldErrorKind::Duplicate,
            Some(other) => {
                errs.push(FieldError {
                    kind: FieldErrorKind::NotSupported,
                    field: format!("{rpath}.reason"),
                    value: Some(other.into()),
                    detail: "supported values: \"FieldValueDuplicate\", \"FieldValueForbidden\", \"FieldValueInvalid\", \"FieldValueRequired\"".into(),
                });
                FieldErrorKind::Invalid
            }
        };
        let field_path = match obj.get("fieldPath").and_then(Value::as_str) {
            None | Some("") => Vec::new(),
            Some(fp) => match parse_field_path(fp, node) {
                Some(p) => p,
                None => {
                    errs.push(FieldError::invalid(
                        format!("{rpath}.fieldPath"),
                        fp,
                        "fieldPath must be a valid path to a field declared in the schema",
                    ));
                    Vec::new()
                }
            },
        };
        rules.push(CelRule {
            source: src.to_string(),
            program,
            message,
            message_expression,
            reason,
            field_path,
            transition,
            optional_old_self,
            depth,
            tree_depth,
        });
    }
    rules
}

thread_local! {
    // Registering the library functions costs more than most rules; do it
    // once per thread.
    static BASE: Context<'static> = {
        let mut ctx = Context::default();
        ctx.register_all();
        ctx
    };
}

/// The state of one request's rule evaluation.
pub(crate) struct Evaluation<'e> {
    pub errs: &'e mut Vec<FieldError>,
    spent: u64,
    exhausted: bool,
}

impl<'e> Evaluation<'e> {
    pub(crate) fn new(errs: &'e mut Vec<FieldError>) -> Self {
        Evaluation {
            errs,
            spent: 0,
            exhausted: false,
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Evaluates every rule at and below `node`.
pub(crate) fn evaluate(
    node: &Node,
    value: &Value,
    old: Option<&Value>,
    path: &str,
    ev: &mut Evaluation<'_>,
) {
    if !node.has_rules || value.is_null() || ev.exhausted {
        return;
    }
    if !node.rules.is_empty() {
        let this = to_cel(Some(node), value);
        let old_cel = old.map(|o| to_cel(Some(node), o));
        run_rules(node, this, old_cel, measure(value), path, ev);
    }
    match value {
        Value::Object(obj) => {
            for (k, v) in obj {
                let Some(child) = node.child(k) else { continue };
                if !child.has_rules {
                    continue;
                }
                let old_child = old.and_then(|o| o.get(k));
                evaluate(child, v, old_child, &join(path, k), ev);
            }
        }
        Value::Array(items) => {
            let Some(item) = node.items.as_deref().filter(|i| i.has_rules) else {
                return;
            };
            let old_items = old.and_then(Value::as_array);
            for (i, v) in items.iter().enumerate() {
                let old_item = match (&node.list_type, old_items) {
                    (Some(ListType::Map(keys)), Some(olds)) => {
                        olds.iter().find(|o| same_key(keys, o, v))
                    }
                    _ => None,
                };
                evaluate(item, v, old_item, &format!("{path}[{i}]"), ev);
            }
        }
        _ => {}
    }
}

/// [`evaluate`] for a whole object, without copying it into a `Value`.
pub(crate) fn evaluate_root(
    node: &Node,
    obj: &Map<String, Value>,
    old: Option<&Map<String, Value>>,
    ev: &mut Evaluation<'_>,
) {
    if !node.has_rules {
        return;
    }
    if !node.rules.is_empty() {
        let (size, widest) = obj.values().fold((1, obj.len() as u64), |(n, w), x| {
            let (xn, xw) = measure(x);
            (n + xn, w.max(xw))
        });
        let this = object_to_cel(Some(node), obj);
        let old_cel = old.map(|o| object_to_cel(Some(node), o));
        run_rules(node, this, old_cel, (size, widest), "", ev);
    }
    for (k, v) in obj {
        let Some(child) = node.child(k).filter(|c| c.has_rules) else {
            continue;
        };
        evaluate(child, v, old.and_then(|o| o.get(k)), k, ev);
    }
}

fn same_key(keys: &[String], a: &Value, b: &Value) -> bool {
    keys.iter().all(|k| a.get(k) == b.get(k))
}

fn run_rules(
    node: &Node,
    this: cel::Value,
    old_cel: Option<cel::Value>,
    (size, widest): (u64, u64),
    path: &str,
    ev: &mut Evaluation<'_>,
) {
    BASE.with(|base| {
        let mut scope = base.new_inner_scope();
        scope.add_variable_from_value("self", this);
        for rule in &node.rules {
            if rule.transition && old_cel.is_none() && !rule.optional_old_self {
                continue;
            }
            let cost = estimate(rule.depth, size, widest);
            let at = rule
                .field_path
                .iter()
                .fold(path.to_string(), |p, f| join(&p, f));
            if cost > PER_CALL_LIMIT {
                ev.errs.push(FieldError::forbidden(
                    at,
                    format!("estimated rule cost exceeds budget by factor of more than {}x (try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)", cost / PER_CALL_LIMIT),
                ));
                continue;
            }
            ev.spent += cost;
            if ev.spent > REQUEST_BUDGET {
                ev.exhausted = true;
                ev.errs.push(FieldError::invalid(
                    at,
                    type_name(node),
                    "validation failed due to running out of cost budget, no further validation rules will be run",
                ));
                return;
            }
            let mut rule_scope = scope.new_inner_scope();
            if rule.transition {
                let o = old_cel.clone();
                let bound = if rule.optional_old_self {
                    cel::Value::Opaque(Arc::new(match o {
                        Some(v) => OptionalValue::of(v),
                        None => OptionalValue::none(),
                    }))
                } else {
                    o.unwrap_or(cel::Value::Null)
                };
                rule_scope.add_variable_from_value("oldSelf", bound);
            }
            match rule.program.execute(&rule_scope) {
                Ok(cel::Value::Bool(true)) => {}
                Ok(cel::Value::Bool(false)) => {
                    let msg = message(rule, &rule_scope);
                    ev.errs.push(rule_error(rule.reason, at, type_name(node), msg));
                }
                Ok(other) => ev.errs.push(FieldError::invalid(
                    at,
                    type_name(node),
                    format!("rule did not evaluate to a bool: {:?}", other.type_of()),
                )),
                Err(e) => ev.errs.push(FieldError::invalid(
                    at,
                    type_name(node),
                    format!("rule evaluation failed: {e}"),
                )),
            }
        }
    });
}

fn type_name(node: &Node) -> &'static str {
    node.ty.map_or("object", Type::name)
}

fn message(rule: &CelRule, scope: &Context<'_>) -> String {
    if let Some(p) = &rule.message_expression
        && let Ok(cel::Value::String(s)) = p.execute(scope)
        && !s.trim().is_empty()
        && !s.contains('\n')
    {
        return s.to_string();
    }
    match &rule.message {
        Some(m) => m.clone(),
        None => format!("failed rule: {}", rule.source),
    }
}

fn rule_error(kind: FieldErrorKind, at: String, ty: &str, msg: String) -> FieldError {
    match kind {
        FieldErrorKind::Required | FieldErrorKind::Forbidden => FieldError {
            kind,
            field: at,
            value: None,
            detail: msg,
        },
        FieldErrorKind::Duplicate => FieldError {
            kind,
            field: at,
            value: Some(ty.into()),
            detail: msg,
        },
        _ => FieldError::invalid(at, ty, msg),
    }
}

/// Nodes in a value and the widest list or map in it.
fn measure(v: &Value) -> (u64, u64) {
    match v {
        Value::Array(a) => a.iter().fold((1, a.len() as u64), |(n, w), x| {
            let (xn, xw) = measure(x);
            (n + xn, w.max(xw))
        }),
        Value::Object(o) => o.values().fold((1, o.len() as u64), |(n, w), x| {
            let (xn, xw) = measure(x);
            (n + xn, w.max(xw))
        }),
        Value::String(s) => (1 + s.len() as u64 / 64, 0),
        _ => (1, 0),
    }
}

/// One comprehension level visits each node of the value at most once;
/// every further level multiplies by the widest collection.
fn estimate(depth: u32, size: u64, widest: u64) -> u64 {
    let mut cost = size;
    for _ in 1..depth {
        cost = cost.saturating_mul(widest.max(1));
    }
    cost
}

/// A JSON value as CEL sees it under `node`: integers and doubles by the
/// declared type, `date-time`/`duration`/`byte` strings as timestamps,
/// durations and bytes, declared property names escaped.
pub(crate) fn to_cel(node: Option<&Node>, v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => {
            if node.and_then(|n| n.ty) == Some(Type::Number) {
                cel::Value::Float(n.as_f64().unwrap_or_default())
            } else if let Some(i) = n.as_i64() {
                cel::Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                cel::Value::UInt(u)
            } else {
                cel::Value::Float(n.as_f64().unwrap_or_default())
            }
        }
        Value::String(s) => {
            match node.and_then(|n| n.format) {
                Some(Format::DateTime) => {
                    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
                        return cel::Value::Timestamp(t);
                    }
                }
                Some(Format::Duration) => {
                    if let Some(secs) = parse_duration_secs(s)
                        && let Ok(d) = chrono::Duration::from_std(
                            std::time::Duration::try_from_secs_f64(secs.abs())
                                .unwrap_or(std::time::Duration::MAX),
                        )
                    {
                        return cel::Value::Duration(if secs < 0.0 { -d } else { d });
                    }
                }
                Some(Format::Byte) => {
                    use base64::Engine as _;
                    if let Ok(b) = base64::engine::general_purpose::STANDARD.decode(s) {
                        return cel::Value::Bytes(Arc::new(b));
                    }
                }
                _ => {}
            }
            cel::Value::String(Arc::new(s.clone()))
        }
        Value::Array(a) => {
            let item = node.and_then(|n| n.items.as_deref());
            cel::Value::List(Arc::new(a.iter().map(|x| to_cel(item, x)).collect()))
        }
        Value::Object(o) => object_to_cel(node, o),
    }
}

fn object_to_cel(node: Option<&Node>, o: &Map<String, Value>) -> cel::Value {
    let mut m = HashMap::with_capacity(o.len());
    for (k, x) in o {
        let (key, child) = match node.and_then(|n| n.properties.get(k)) {
            Some(p) => match escape(k) {
                Some(e) => (e, Some(p)),
                None => continue,
            },
            None => (k.clone(), node.and_then(|n| n.additional.as_deref())),
        };
        m.insert(Key::String(Arc::new(key)), to_cel(child, x));
    }
    cel::Value::Map(CelMap { map: Arc::new(m) })
}

#[cfg(test)]
mod tests {
    use super::super::structural::Compiler;
    use super::*;
    use serde_json::json;

    fn compile(schema: Value) -> Result<Node, Vec<String>> {
        let mut c = Compiler::new();
        let n = c.root(&schema);
        if c.errors.is_empty() {
            Ok(n)
        } else {
            Err(c.errors.iter().map(ToString::to_string).collect())
        }
    }

    fn run(node: &Node, obj: Value, old: Option<Value>) -> Vec<String> {
        let mut errs = Vec::new();
        let mut ev = Evaluation::new(&mut errs);
        evaluate(node, &obj, old.as_ref(), "", &mut ev);
        errs.iter().map(ToString::to_string).collect()
    }

    fn with_rules(spec_rules: Value) -> Value {
        json!({"type": "object", "properties": {"spec": {
        "type": "object",
        "x-kubernetes-validations": spec_rules,
        "properties": {
            "min": {"type": "integer"}, "max": {"type": "integer"},
            "name": {"type": "string"},
            "x-y": {"type": "string"},
            "items": {"type": "array", "maxItems": 10, "items": {"type": "string"}},
            "when": {"type": "string", "format": "date-time"},
            "ttl": {"type": "string", "format": "duration"}
        }}}})
    }

    #[test]
    fn rules_messages_reasons_and_field_paths() {
        let n = compile(with_rules(json!([
            {"rule": "self.min <= self.max", "message": "min must not exceed max"},
            {"rule": "self.name.startsWith('a')", "messageExpression": "'name ' + self.name + ' must start with a'",
             "reason": "FieldValueForbidden", "fieldPath": ".name"},
            {"rule": "self.x__dash__y == 'ok'"},
            {"rule": "self.items.all(i, size(i) < 3) && self.items.isSorted()"},
            {"rule": "self.ttl > duration('1m') && self.when > timestamp('2020-01-01T00:00:00Z')"}
        ])))
        .unwrap();
        let ok = json!({"spec": {"min": 1, "max": 2, "name": "abc", "x-y": "ok", "items": ["a", "b"],
                                 "when": "2024-01-01T00:00:00Z", "ttl": "5m"}});
        assert_eq!(run(&n, ok, None), Vec::<String>::new());
        let bad = json!({"spec": {"min": 3, "max": 2, "name": "zed", "x-y": "no", "items": ["b", "a"],
                                  "when": "2019-01-01T00:00:00Z", "ttl": "5s"}});
        assert_eq!(
            run(&n, bad, None),
            vec![
                "spec: Invalid value: \"object\": min must not exceed max",
                "spec.name: Forbidden: name zed must start with a",
                "spec: Invalid value: \"object\": failed rule: self.x__dash__y == 'ok'",
                "spec: Invalid value: \"object\": failed rule: self.items.all(i, size(i) < 3) && self.items.isSorted()",
                "spec: Invalid value: \"object\": failed rule: self.ttl > duration('1m') && self.when > timestamp('2020-01-01T00:00:00Z')",
            ]
        );
    }

    #[test]
    fn transition_rules_need_an_old_object() {
        let n = compile(with_rules(json!([
            {"rule": "self.name == oldSelf.name", "message": "name is immutable"},
            {"rule": "!oldSelf.hasValue() || self.min >= oldSelf.value().min", "optionalOldSelf": true,
             "message": "min may only grow"}
        ])))
        .unwrap();
        let new = json!({"spec": {"name": "b", "min": 1}});
        assert!(run(&n, new.clone(), None).is_empty());
        let old = json!({"spec": {"name": "a", "min": 2}});
        assert_eq!(
            run(&n, new, Some(old)),
            vec![
                "spec: Invalid value: \"object\": name is immutable",
                "spec: Invalid value: \"object\": min may only grow",
            ]
        );
    }

    #[test]
    fn compile_errors() {
        let errs = compile(with_rules(json!([
            {"rule": "self.min <"},
            {"rule": "self.min > other"},
            {"rule": "self.min > 0", "reason": "Nope"},
            {"rule": "self.min > 0", "fieldPath": ".nope"},
            {"rule": "self.min > 0", "optionalOldSelf": true}
        ])))
        .unwrap_err();
        for needle in [
            "properties[spec].x-kubernetes-validations[0].rule: Invalid value: \"self.min <\": compilation failed",
            "x-kubernetes-validations[1].rule: Invalid value: \"self.min > other\": compilation failed: undeclared reference to 'other'",
            "x-kubernetes-validations[2].reason: Unsupported value: \"Nope\"",
            "x-kubernetes-validations[3].fieldPath: Invalid value: \".nope\"",
            "x-kubernetes-validations[4].optionalOldSelf: Forbidden",
        ] {
            assert!(
                errs.iter().any(|e| e.contains(needle)),
                "missing {needle:?} in {errs:#?}"
            );
        }
        // oldSelf inside an atomic list's elements has nothing to compare with.
        let errs = compile(json!({"type": "object", "properties": {"l": {"type": "array",
            "items": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}}}}))
        .unwrap_err();
        assert!(errs[0].contains("uncorrelatable"), "{errs:?}");
    }

    #[test]
    fn map_list_elements_correlate_by_key() {
        let n = compile(json!({"type": "object", "properties": {"l": {"type": "array",
            "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"],
            "items": {"type": "object", "properties": {"k": {"type": "string"}, "v": {"type": "integer"}},
                      "x-kubernetes-validations": [{"rule": "self.v >= oldSelf.v", "message": "v may only grow"}]}}}}))
        .unwrap();
        let old = json!({"l": [{"k": "a", "v": 1}, {"k": "b", "v": 5}]});
        let new = json!({"l": [{"k": "b", "v": 4}, {"k": "a", "v": 2}, {"k": "c", "v": 0}]});
        assert_eq!(
            run(&n, new, Some(old)),
            vec!["l[0]: Invalid value: \"object\": v may only grow"]
        );
    }

    #[test]
    fn cost_is_bounded() {
        let n = compile(json!({"type": "object", "properties": {"l": {"type": "array",
            "items": {"type": "integer"},
            "x-kubernetes-validations": [{"rule": "self.all(a, self.all(b, self.all(c, a + b + c >= 0)))"}]}}}))
        .unwrap();
        let small = json!({"l": (0..10).collect::<Vec<i64>>()});
        assert!(run(&n, small, None).is_empty());
        let big = json!({"l": (0..2000).collect::<Vec<i64>>()});
        let errs = run(&n, big, None);
        assert!(
            errs[0].contains("estimated rule cost exceeds budget"),
            "{errs:?}"
        );
    }

    // Kubernetes CEL library functions this build evaluates (kube-cel on top
    // of the cel crate). Each expression must be true.
    #[test]
    fn kubernetes_library_functions() {
        let exprs = [
            "[1, 2, 3].isSorted() && [1, 2, 3].sum() == 6 && [3, 1].min() == 1 && [3, 1].max() == 3",
            "[1, 2, 3].indexOf(2) == 1 && [1, 2, 2].lastIndexOf(2) == 2",
            "'abc'.matches('^a') && 'a1b2'.find('[0-9]') == '1' && 'a1b2'.findAll('[0-9]').size() == 2",
            "url('https://example.com:8443/p?q=1').getHost() == 'example.com:8443' && isURL('https://x')",
            "url('https://example.com/p').getScheme() == 'https' && url('https://example.com/p').getEscapedPath() == '/p'",
            "quantity('1Gi').isGreaterThan(quantity('1Mi')) && isQuantity('500m') && quantity('1k').asInteger() == 1000",
            "quantity('1').add(quantity('2')).compareTo(quantity('3')) == 0",
            "ip('10.0.0.1').family() == 4 && isIP('::1') && cidr('10.0.0.0/8').containsIP(ip('10.1.2.3')) && isCIDR('10.0.0.0/8')",
            "semver('1.2.3').major() == 1 && isSemver('1.2.3')",
            "'hello %s'.format(['world']) == 'hello world'",
            "'Hello'.lowerAscii() == 'hello' && 'a,b'.split(',').size() == 2 && ' x '.trim() == 'x' && 'abc'.substring(1) == 'bc'",
            "'abc'.charAt(1) == 'b' && 'abc'.indexOf('c') == 2 && 'a-b'.replace('-', '_') == 'a_b' && ['a', 'b'].join('-') == 'a-b'",
            "sets.contains([1, 2], [1]) && sets.intersects([1], [1, 2]) && sets.equivalent([1, 2], [2, 1])",
            "math.greatest(1, 2) == 2 && math.least(1, 2) == 1",
            "base64.encode(b'hi') == 'aGk=' && base64.decode('aGk=') == b'hi'",
            "duration('1h') > duration('1m') && timestamp('2024-01-01T00:00:00Z').getFullYear() == 2024",
            "[1, 2].all(x, x > 0) && [1, 2].exists(x, x == 2) && [1, 2].exists_one(x, x == 2)",
            "[1, 2].map(x, x * 2) == [2, 4] && [1, 2].filter(x, x > 1) == [2]",
            "has(self.a) && !has(self.b) && 'a' in self && size(self) == 1",
            "optional.of(1).hasValue() && optional.none().orValue(2) == 2",
            "int('1') == 1 && string(1) == '1' && double(1) == 1.0 && uint(1) == 1u",
        ];
        let mut failed = Vec::new();
        for e in exprs {
            let got = compile_program(e).map(|(program, _)| {
                BASE.with(|base| {
                    let mut scope = base.new_inner_scope();
                    scope.add_variable_from_value("self", to_cel(None, &json!({"a": 1})));
                    program.execute(&scope)
                })
            });
            if !matches!(got, Ok(Ok(cel::Value::Bool(true)))) {
                failed.push(format!("{e}: {got:?}"));
            }
        }
        assert!(failed.is_empty(), "{failed:#?}");
    }

    // Hostile shapes parse (or are refused) and run on a 2 MiB stack (a
    // tokio worker's), in a debug build where frames are largest.
    #[test]
    fn hostile_expressions_keep_the_stack_safe() {
        let cases = [
            format!("{}1 == 1", "1 + ".repeat(1000)),
            format!("{}true", "!".repeat(4000)),
            format!("{}self{} > 0", "size(".repeat(500), ")".repeat(500)),
            format!("{}1{} == [1]", "[".repeat(30), "]".repeat(30)),
            format!("{}1{} == 1", "(".repeat(1000), ")".repeat(1000)),
            format!("self{} == 1", ".a".repeat(2000)),
            format!("{}1 > 0", "-".repeat(60)),
            format!("{}true", "true && ".repeat(60)),
            format!(
                "self.all(a, {}true{})",
                "self.all(b, ".repeat(20),
                ")".repeat(20)
            ),
            // Shallow enough to run on the caller's stack.
            format!("{}true", "true && ".repeat(SHALLOW_TREE - 1)),
            format!(
                "{}self{} > 0",
                "size(".repeat(SHALLOW_TREE - 2),
                ")".repeat(SHALLOW_TREE - 2)
            ),
        ];
        for src in cases {
            let head = src[..30].to_string();
            let done = std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || {
                    let schema = json!({"type": "object", "x-kubernetes-validations": [{"rule": src}],
                                        "properties": {"a": {"type": "integer"}}});
                    match super::super::CompiledSchema::compile(&schema) {
                        Ok(s) => {
                            let obj = match json!({"a": 1}) {
                                Value::Object(m) => m,
                                _ => Map::new(),
                            };
                            s.validate(&obj, None).len()
                        }
                        Err(e) => e.len(),
                    }
                })
                .map(|h| h.join().is_ok());
            assert_eq!(done.ok(), Some(true), "{head}");
        }
        assert!(compile_program(&"1".repeat(MAX_EXPRESSION_LEN + 1)).is_err());
        let err =
            compile_program(&format!("{}self{} > 0", "size(".repeat(70), ")".repeat(70))).err();
        assert_eq!(
            err.as_deref(),
            Some("expression nests deeper than 64 levels")
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape("a-b.c/d").as_deref(),
            Some("a__dash__b__dot__c__slash__d")
        );
        assert_eq!(escape("namespace").as_deref(), Some("__namespace__"));
        assert_eq!(escape("a__b").as_deref(), Some("a__underscores__b"));
        assert_eq!(escape("a b"), None);
    }
}
