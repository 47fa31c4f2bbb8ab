//! Label and field selectors: parsing (the full Kubernetes grammar) and matching.
//!
//! Semantics follow apimachinery's `labels.Parse` and `fields.ParseSelector`:
//! requirements are ANDed, `!=`/`notin` also match objects lacking the key,
//! `>`/`<` compare integers, and a field missing from an object compares as
//! the empty string.

use std::fmt;

use serde_json::{Map, Value};

/// A selector that could not be parsed or built. Every variant is a client
/// mistake and becomes a 400 BadRequest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The label selector string does not follow the grammar.
    #[error("unable to parse requirement: {0}")]
    LabelSyntax(String),
    /// A label key or value (or an operator/value combination) is invalid.
    #[error("unable to parse requirement: {0}")]
    LabelInvalid(String),
    /// The field selector string does not follow the grammar.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldSyntax { selector: String, term: String },
    /// A bad `\` escape in a field selector value.
    #[error("invalid field selector: {0}")]
    FieldEscape(String),
    /// A `metav1.LabelSelector` object that is malformed.
    #[error("{0}")]
    InvalidObject(String),
}

// ---------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------

/// Operator of one label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LabelOp {
    /// `k=v`
    Equals,
    /// `k==v`
    DoubleEquals,
    /// `k!=v`
    NotEquals,
    /// `k in (a,b)`
    In,
    /// `k notin (a,b)`
    NotIn,
    /// `k`
    Exists,
    /// `!k`
    DoesNotExist,
    /// `k>N`
    GreaterThan,
    /// `k<N`
    LessThan,
}

/// One label requirement: key, operator and (sorted, deduplicated) values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequirement {
    pub key: String,
    pub op: LabelOp,
    pub values: Vec<String>,
}

impl LabelRequirement {
    /// Builds a requirement, validating key, values and arity as
    /// apimachinery's `labels.NewRequirement` does.
    pub fn new(key: &str, op: LabelOp, values: Vec<String>) -> Result<Self, SelectorError> {
        if let Err(msg) = validate_qualified_name(key) {
            return Err(SelectorError::LabelInvalid(format!(
                "key: Invalid value: {key:?}: {msg}"
            )));
        }
        match op {
            LabelOp::In | LabelOp::NotIn if values.is_empty() => {
                return Err(SelectorError::LabelInvalid(
                    "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty"
                        .into(),
                ));
            }
            LabelOp::Equals | LabelOp::DoubleEquals | LabelOp::NotEquals if values.len() != 1 => {
                return Err(SelectorError::LabelInvalid(format!(
                    "values: Invalid value: {values:?}: exact-match compatibility requires one single value"
                )));
            }
            LabelOp::Exists | LabelOp::DoesNotExist if !values.is_empty() => {
                return Err(SelectorError::LabelInvalid(format!(
                    "values: Invalid value: {values:?}: values set must be empty for exists and does not exist"
                )));
            }
            LabelOp::GreaterThan | LabelOp::LessThan => {
                if values.len() != 1 {
                    return Err(SelectorError::LabelInvalid(format!(
                        "values: Invalid value: {values:?}: for 'Gt', 'Lt' operators, exactly one value is required"
                    )));
                }
                if values[0].parse::<i64>().is_err() {
                    return Err(SelectorError::LabelInvalid(format!(
                        "values[0]: Invalid value: {:?}: for 'Gt', 'Lt' operators, the value must be an integer",
                        values[0]
                    )));
                }
            }
            _ => {}
        }
        // Gt/Lt values are integers, never label values; everything else is.
        if !matches!(op, LabelOp::GreaterThan | LabelOp::LessThan) {
            for (i, v) in values.iter().enumerate() {
                if let Err(msg) = validate_label_value(v) {
                    return Err(SelectorError::LabelInvalid(format!(
                        "values[{i}][{key}]: Invalid value: {v:?}: {msg}"
                    )));
                }
            }
        }
        let mut values = values;
        values.sort();
        values.dedup();
        Ok(LabelRequirement {
            key: key.to_string(),
            op,
            values,
        })
    }

    /// Whether a label set satisfies this requirement.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let value = labels
            .and_then(|l| l.get(&self.key))
            .and_then(Value::as_str);
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.op {
            LabelOp::Equals | LabelOp::DoubleEquals | LabelOp::In => value.is_some_and(has),
            LabelOp::NotEquals | LabelOp::NotIn => !value.is_some_and(has),
            LabelOp::Exists => value.is_some(),
            LabelOp::DoesNotExist => value.is_none(),
            LabelOp::GreaterThan | LabelOp::LessThan => {
                let Some(Ok(actual)) = value.map(str::parse::<i64>) else {
                    return false;
                };
                let Some(Ok(bound)) = self.values.first().map(|v| v.parse::<i64>()) else {
                    return false;
                };
                if self.op == LabelOp::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }
}

impl fmt::Display for LabelRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.values.first().map(String::as_str).unwrap_or("");
        match self.op {
            LabelOp::Exists => write!(f, "{}", self.key),
            LabelOp::DoesNotExist => write!(f, "!{}", self.key),
            LabelOp::Equals => write!(f, "{}={first}", self.key),
            LabelOp::DoubleEquals => write!(f, "{}=={first}", self.key),
            LabelOp::NotEquals => write!(f, "{}!={first}", self.key),
            LabelOp::GreaterThan => write!(f, "{}>{first}", self.key),
            LabelOp::LessThan => write!(f, "{}<{first}", self.key),
            LabelOp::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            LabelOp::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
        }
    }
}

/// A parsed label selector: requirements ANDed together.
///
/// The empty selector matches everything. [`LabelSelector::nothing`] (what a
/// `null` metav1.LabelSelector means) matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
    nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// The selector that matches no object.
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Builds a selector from requirements (sorted by key, as upstream does).
    pub fn from_requirements(mut requirements: Vec<LabelRequirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector {
            requirements,
            nothing: false,
        }
    }

    /// Parses the string form (`?labelSelector=`).
    pub fn parse(input: &str) -> Result<LabelSelector, SelectorError> {
        let tokens = lex(input)?;
        let mut p = Parser { tokens, pos: 0 };
        let mut reqs = Vec::new();
        loop {
            match p.peek() {
                Token::Eof => break,
                Token::Comma => {
                    // upstream accepts neither a leading nor a doubled comma
                    return Err(syntax(
                        "found ',', expected: !, identifier, or 'end of string'",
                    ));
                }
                _ => {}
            }
            reqs.push(p.requirement()?);
            match p.next() {
                Token::Eof => break,
                Token::Comma => {
                    if p.peek() == &Token::Eof {
                        return Err(syntax("found '', expected: identifier after ','"));
                    }
                }
                t => {
                    return Err(syntax(&format!(
                        "found '{}', expected: ',' or 'end of string'",
                        t.literal()
                    )));
                }
            }
        }
        Ok(Self::from_requirements(reqs))
    }

    /// Builds a selector from the `metav1.LabelSelector` object form
    /// (`matchLabels`, `matchExpressions`). `null` matches nothing, `{}`
    /// matches everything, as in apimachinery's `LabelSelectorAsSelector`.
    pub fn from_json(value: &Value) -> Result<LabelSelector, SelectorError> {
        let obj = match value {
            Value::Null => return Ok(Self::nothing()),
            Value::Object(o) => o,
            _ => {
                return Err(SelectorError::InvalidObject(
                    "label selector must be an object".into(),
                ));
            }
        };
        let mut reqs = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (k, v) in labels {
                    let Some(v) = v.as_str() else {
                        return Err(SelectorError::InvalidObject(format!(
                            "matchLabels[{k}]: value must be a string"
                        )));
                    };
                    reqs.push(LabelRequirement::new(
                        k,
                        LabelOp::Equals,
                        vec![v.to_string()],
                    )?);
                }
            }
            Some(_) => {
                return Err(SelectorError::InvalidObject(
                    "matchLabels must be an object".into(),
                ));
            }
        }
        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for e in exprs {
                    let key = e.get("key").and_then(Value::as_str).unwrap_or("");
                    let op = e.get("operator").and_then(Value::as_str).unwrap_or("");
                    let values: Vec<String> = match e.get("values") {
                        None | Some(Value::Null) => Vec::new(),
                        Some(Value::Array(vs)) => vs
                            .iter()
                            .map(|v| v.as_str().map(str::to_string))
                            .collect::<Option<_>>()
                            .ok_or_else(|| {
                                SelectorError::InvalidObject(
                                    "matchExpressions values must be strings".into(),
                                )
                            })?,
                        Some(_) => {
                            return Err(SelectorError::InvalidObject(
                                "matchExpressions values must be an array".into(),
                            ));
                        }
                    };
                    let op = match op {
                        "In" => LabelOp::In,
                        "NotIn" => LabelOp::NotIn,
                        "Exists" => LabelOp::Exists,
                        "DoesNotExist" => LabelOp::DoesNotExist,
                        other => {
                            return Err(SelectorError::InvalidObject(format!(
                                "{other:?} is not a valid label selector operator"
                            )));
                        }
                    };
                    reqs.push(LabelRequirement::new(key, op, values)?);
                }
            }
            Some(_) => {
                return Err(SelectorError::InvalidObject(
                    "matchExpressions must be an array".into(),
                ));
            }
        }
        Ok(Self::from_requirements(reqs))
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[LabelRequirement] {
        &self.requirements
    }

    /// True for the selector that matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty() && !self.nothing
    }

    /// Whether an object's `metadata.labels` satisfies every requirement.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

fn syntax(msg: &str) -> SelectorError {
    SelectorError::LabelSyntax(msg.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Eof,
    Comma,
    OpenPar,
    ClosePar,
    Not,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    In,
    NotIn,
}

impl Token {
    fn literal(&self) -> &str {
        match self {
            Token::Ident(s) => s,
            Token::Eof => "",
            Token::Comma => ",",
            Token::OpenPar => "(",
            Token::ClosePar => ")",
            Token::Not => "!",
            Token::Eq => "=",
            Token::DoubleEq => "==",
            Token::NotEq => "!=",
            Token::Gt => ">",
            Token::Lt => "<",
            Token::In => "in",
            Token::NotIn => "notin",
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn lex(input: &str) -> Result<Vec<Token>, SelectorError> {
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if is_special(c) {
            chars.next();
            let two = chars.peek().copied();
            let tok = match (c, two) {
                ('=', Some('=')) => {
                    chars.next();
                    Token::DoubleEq
                }
                ('!', Some('=')) => {
                    chars.next();
                    Token::NotEq
                }
                ('=', _) => Token::Eq,
                ('!', _) => Token::Not,
                ('(', _) => Token::OpenPar,
                (')', _) => Token::ClosePar,
                (',', _) => Token::Comma,
                ('>', _) => Token::Gt,
                _ => Token::Lt,
            };
            out.push(tok);
            continue;
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() || is_special(c) {
                break;
            }
            word.push(c);
            chars.next();
        }
        out.push(match word.as_str() {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Ident(word),
        });
    }
    out.push(Token::Eof);
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        self.tokens.get(self.pos).unwrap_or(&Token::Eof)
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        self.pos += 1;
        t
    }

    fn requirement(&mut self) -> Result<LabelRequirement, SelectorError> {
        let negated = if self.peek() == &Token::Not {
            self.next();
            true
        } else {
            false
        };
        let key = match self.next() {
            Token::Ident(k) => k,
            t if negated => {
                return Err(syntax(&format!(
                    "found '{}', expected: identifier after '!'",
                    t.literal()
                )));
            }
            t => {
                return Err(syntax(&format!(
                    "found '{}', expected: !, identifier, or 'end of string'",
                    t.literal()
                )));
            }
        };
        if negated {
            return LabelRequirement::new(&key, LabelOp::DoesNotExist, Vec::new());
        }
        let op = match self.peek() {
            Token::Eof | Token::Comma => {
                return LabelRequirement::new(&key, LabelOp::Exists, Vec::new());
            }
            Token::Eq => LabelOp::Equals,
            Token::DoubleEq => LabelOp::DoubleEquals,
            Token::NotEq => LabelOp::NotEquals,
            Token::Gt => LabelOp::GreaterThan,
            Token::Lt => LabelOp::LessThan,
            Token::In => LabelOp::In,
            Token::NotIn => LabelOp::NotIn,
            t => {
                return Err(syntax(&format!(
                    "found '{}', expected: '=', '!=', '==', 'in', notin'",
                    t.literal()
                )));
            }
        };
        self.next();
        let values = match op {
            LabelOp::In | LabelOp::NotIn => self.value_set()?,
            _ => match self.peek() {
                // `k=` means "the label is present with an empty value"
                Token::Eof | Token::Comma => vec![String::new()],
                Token::Ident(_) => match self.next() {
                    Token::Ident(v) => vec![v],
                    _ => Vec::new(),
                },
                // keywords are ordinary values after an operator (`k=in`)
                Token::In | Token::NotIn => vec![self.next().literal().to_string()],
                t => {
                    return Err(syntax(&format!(
                        "found '{}', expected: identifier",
                        t.literal()
                    )));
                }
            },
        };
        LabelRequirement::new(&key, op, values)
    }

    /// `( v1, v2, ... )`; empty members (`(a,,b)`, `()`) are empty values.
    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        let t = self.next();
        if t != Token::OpenPar {
            return Err(syntax(&format!("found '{}' expected: '('", t.literal())));
        }
        let mut values = Vec::new();
        let mut expect_value = true;
        loop {
            match self.next() {
                Token::ClosePar => {
                    if expect_value {
                        values.push(String::new());
                    }
                    return Ok(values);
                }
                Token::Comma => {
                    if expect_value {
                        values.push(String::new());
                    }
                    expect_value = true;
                }
                t @ (Token::Ident(_) | Token::In | Token::NotIn) if expect_value => {
                    values.push(t.literal().to_string());
                    expect_value = false;
                }
                t => {
                    return Err(syntax(&format!(
                        "found '{}', expected: ',', ')' or identifier",
                        t.literal()
                    )));
                }
            }
        }
    }
}

const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

fn is_name_chars(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && !s.is_empty()
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
                && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// Validates a label key: an optional DNS-subdomain prefix (≤253) and `/`,
/// then a name (≤63) of `[A-Za-z0-9]([-_.A-Za-z0-9]*[A-Za-z0-9])?`.
pub fn validate_qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if name.contains('/') {
        return Err("a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".into());
    }
    if let Some(p) = prefix {
        if p.is_empty() {
            return Err("prefix part must be non-empty".into());
        }
        if !is_dns1123_subdomain(p) {
            return Err("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into());
        }
    }
    if name.is_empty() {
        return Err("name part must be non-empty".into());
    }
    if name.len() > 63 {
        return Err("name part must be no more than 63 characters".into());
    }
    if !is_name_chars(name) {
        return Err(QUALIFIED_NAME_MSG.into());
    }
    Ok(())
}

/// Validates a label value: empty, or ≤63 characters of
/// `[A-Za-z0-9]([-_.A-Za-z0-9]*[A-Za-z0-9])?`.
pub fn validate_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > 63 {
        return Err("must be no more than 63 characters".into());
    }
    if !is_name_chars(value) {
        return Err("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------

/// Operator of one field requirement (`=` and `==` are the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldOp {
    Eq,
    NotEq,
}

/// `field op value`, with `value` unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub op: FieldOp,
    pub value: String,
}

/// A parsed field selector: requirements ANDed together.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses the string form (`?fieldSelector=`).
    pub fn parse(input: &str) -> Result<FieldSelector, SelectorError> {
        let mut requirements = Vec::new();
        for term in split_unescaped_commas(input) {
            if term.is_empty() {
                continue;
            }
            let Some((lhs, op, rhs)) = split_field_term(term) else {
                return Err(SelectorError::FieldSyntax {
                    selector: input.to_string(),
                    term: term.to_string(),
                });
            };
            requirements.push(FieldRequirement {
                field: lhs.to_string(),
                op,
                value: unescape_field_value(rhs)?,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// The requirements, in the order written.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// True when the selector has no requirement.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Matches using `get` to read a field; a missing field compares as "".
    pub fn matches(&self, get: &dyn Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let actual = get(&r.field).unwrap_or_default();
            match r.op {
                FieldOp::Eq => actual == r.value,
                FieldOp::NotEq => actual != r.value,
            }
        })
    }

    /// The value `field` must equal, if the selector pins it with `=`/`==`
    /// (e.g. `metadata.name=x` narrows a list to one key).
    pub fn exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.op == FieldOp::Eq)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match r.op {
                FieldOp::Eq => "=",
                FieldOp::NotEq => "!=",
            };
            write!(f, "{}{op}", r.field)?;
            for c in r.value.chars() {
                if matches!(c, '\\' | ',' | '=') {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Splits on commas not preceded by an (unescaped) backslash.
fn split_unescaped_commas(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

/// Finds the first unescaped operator; `!=` and `==` win over `=` at the
/// same position.
fn split_field_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    let mut escaped = false;
    for (i, c) in term.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
            continue;
        }
        let rest = &term[i..];
        for (lit, op) in [
            ("!=", FieldOp::NotEq),
            ("==", FieldOp::Eq),
            ("=", FieldOp::Eq),
        ] {
            if rest.starts_with(lit) {
                return Some((&term[..i], op, &term[i + lit.len()..]));
            }
        }
    }
    None
}

fn unescape_field_value(s: &str) -> Result<String, SelectorError> {
    if !s.contains('\\') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(e @ ('\\' | ',' | '=')) => out.push(e),
            Some(e) => {
                return Err(SelectorError::FieldEscape(format!(
                    "invalid field selector value {s:?}: invalid escape sequence: \\{e}"
                )));
            }
            None => {
                return Err(SelectorError::FieldEscape(format!(
                    "invalid field selector value {s:?}: unterminated escape sequence"
                )));
            }
        }
    }
    Ok(out)
}

/// Reads a dotted `path` of `obj` in the form field selectors compare:
/// strings as-is, booleans `true`/`false`, numbers in decimal.
///
/// Special cases, following kube-apiserver's per-type field sets:
/// - `status.podIP` falls back to `status.podIPs[0].ip`;
/// - a list (e.g. `status.podIPs`) renders as its members joined with `,`,
///   objects with an `ip` member contributing that (the downward API form);
/// - `source` on a core Event is `source.component`.
///
/// Missing fields return `None`. Upstream's typed field sets render some
/// absent fields as a default (`spec.hostNetwork` and `spec.unschedulable`
/// as `false`); callers that need that apply the default themselves.
pub fn field_value(obj: &Value, path: &str) -> Option<String> {
    let mut cur = Some(obj);
    for seg in path.split('.') {
        cur = cur.and_then(|c| c.get(seg));
    }
    match cur.unwrap_or(&Value::Null) {
        Value::Null => {
            if path == "status.podIP" {
                return field_value(obj, "status.podIPs")
                    .and_then(|s| s.split(',').next().map(str::to_string));
            }
            None
        }
        Value::Object(m) if path == "source" => m
            .get("component")
            .and_then(Value::as_str)
            .map(str::to_string),
        Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .filter_map(|v| match v {
                    Value::Object(m) => m.get("ip").and_then(scalar_string),
                    other => scalar_string(other),
                })
                .collect();
            Some(parts.join(","))
        }
        other => scalar_string(other),
    }
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    /// Parses `sel`, then checks it against each (labels, expected) pair.
    fn check(sel: &str, cases: &[(Value, bool)]) {
        let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel:?}: {e}"));
        for (l, want) in cases {
            let m = labels(l.clone());
            assert_eq!(s.matches(Some(&m)), *want, "{sel:?} against {l}");
        }
    }

    #[test]
    fn label_equality() {
        check(
            "a=b",
            &[
                (json!({"a":"b"}), true),
                (json!({"a":"c"}), false),
                (json!({}), false),
            ],
        );
        check(
            "a==b",
            &[(json!({"a":"b"}), true), (json!({"a":"c"}), false)],
        );
        check(
            "a!=b",
            &[
                (json!({"a":"b"}), false),
                (json!({"a":"c"}), true),
                (json!({}), true),
            ],
        );
        check(
            "a=",
            &[
                (json!({"a":""}), true),
                (json!({"a":"x"}), false),
                (json!({}), false),
            ],
        );
        check("a!=", &[(json!({"a":""}), false), (json!({}), true)]);
    }

    #[test]
    fn label_sets() {
        check(
            "env in (prod, dev)",
            &[
                (json!({"env":"prod"}), true),
                (json!({"env":"qa"}), false),
                (json!({}), false),
            ],
        );
        check(
            "env notin (prod,dev)",
            &[
                (json!({"env":"prod"}), false),
                (json!({"env":"qa"}), true),
                (json!({}), true),
            ],
        );
        check(
            "env in (prod,)",
            &[(json!({"env":""}), true), (json!({"env":"prod"}), true)],
        );
        check(
            "env in ()",
            &[(json!({"env":""}), true), (json!({"env":"x"}), false)],
        );
    }

    #[test]
    fn label_existence() {
        check("a", &[(json!({"a":""}), true), (json!({}), false)]);
        check("!a", &[(json!({"a":"x"}), false), (json!({}), true)]);
        check(
            " !a , b ",
            &[(json!({"b":"1"}), true), (json!({"a":"1","b":"1"}), false)],
        );
    }

    #[test]
    fn label_numeric() {
        check(
            "n>5",
            &[
                (json!({"n":"6"}), true),
                (json!({"n":"5"}), false),
                (json!({"n":"x"}), false),
                (json!({}), false),
            ],
        );
        check(
            "n<5",
            &[(json!({"n":"-1"}), true), (json!({"n":"10"}), false)],
        );
        assert!(LabelSelector::parse("n>x").is_err());
        assert!(LabelSelector::parse("n>").is_err());
    }

    #[test]
    fn label_conjunction_and_helm_shapes() {
        check(
            "name=web,owner=helm,status=deployed",
            &[
                (
                    json!({"name":"web","owner":"helm","status":"deployed","version":"1"}),
                    true,
                ),
                (
                    json!({"name":"web","owner":"helm","status":"superseded"}),
                    false,
                ),
            ],
        );
        check(
            "app.kubernetes.io/name=x",
            &[(json!({"app.kubernetes.io/name":"x"}), true)],
        );
        check("k=in", &[(json!({"k":"in"}), true)]);
    }

    #[test]
    fn label_none_labels() {
        let s = LabelSelector::parse("a!=b").unwrap();
        assert!(s.matches(None));
        let s = LabelSelector::parse("a").unwrap();
        assert!(!s.matches(None));
        assert!(LabelSelector::parse("").unwrap().matches(None));
        assert!(LabelSelector::parse("  ").unwrap().is_empty());
    }

    #[test]
    fn label_syntax_errors() {
        for bad in [
            "a=b=c",
            "a b",
            "a in b",
            "a in (b",
            "!",
            "!a=b",
            ",",
            "a,",
            "a,,b",
            "a=(b)",
            "x in (a b)",
            "=a",
            "a=(",
            "a=b c",
        ] {
            let got = LabelSelector::parse(bad);
            assert!(got.is_err(), "{bad:?} parsed as {got:?}");
        }
    }

    #[test]
    fn label_validation() {
        let long = "a".repeat(64);
        for bad in [
            format!("{long}=b"),
            format!("a={long}"),
            "a=-b".into(),
            "a=b-".into(),
            "-a=b".into(),
            "Example.com/a=b".into(),
            "/a=b".into(),
            "a/b/c=d".into(),
            "a=%".into(),
        ] {
            assert!(
                matches!(
                    LabelSelector::parse(&bad),
                    Err(SelectorError::LabelInvalid(_))
                ),
                "{bad:?} accepted"
            );
        }
        let ok = format!("{}/{}=v", "d".repeat(200), "a".repeat(63));
        assert!(LabelSelector::parse(&ok).is_ok());
        assert!(LabelSelector::parse("A_b.c=X_y.z").is_ok());
        let e = LabelSelector::parse("a=%").unwrap_err().to_string();
        assert!(e.starts_with("unable to parse requirement"), "{e}");
    }

    #[test]
    fn label_display_canonical() {
        for (input, want) in [
            ("b=1,a=2", "a=2,b=1"),
            ("a == x", "a==x"),
            ("x notin (c, a ,b)", "x notin (a,b,c)"),
            ("z,!y", "!y,z"),
            ("n>3", "n>3"),
            ("k=", "k="),
            ("k in (b,a,a)", "k in (a,b)"),
        ] {
            assert_eq!(
                LabelSelector::parse(input).unwrap().to_string(),
                want,
                "{input:?}"
            );
        }
        // The canonical string parses back to the same selector.
        let s = LabelSelector::parse("x notin (c,a),y,!z,w=").unwrap();
        assert_eq!(LabelSelector::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn label_from_json() {
        let s = LabelSelector::from_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["fe", "be"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "Exists"},
                {"key": "env", "operator": "NotIn", "values": ["prod"]}
            ]
        }))
        .unwrap();
        assert_eq!(
            s.to_string(),
            "app=web,!canary,env notin (prod),tier in (be,fe),zone"
        );
        let m = labels(json!({"app":"web","tier":"fe","zone":"a"}));
        assert!(s.matches(Some(&m)));
        let m = labels(json!({"app":"web","tier":"fe","zone":"a","canary":"1"}));
        assert!(!s.matches(Some(&m)));

        assert!(LabelSelector::from_json(&json!({})).unwrap().matches(None));
        assert!(LabelSelector::from_json(&json!({})).unwrap().is_empty());
        let nothing = LabelSelector::from_json(&Value::Null).unwrap();
        assert!(!nothing.matches(Some(&Map::new())));
        assert!(!nothing.is_empty());
        assert!(
            LabelSelector::from_json(&json!({"matchExpressions":[{"key":"a","operator":"Bogus"}]}))
                .is_err()
        );
        assert!(
            LabelSelector::from_json(
                &json!({"matchExpressions":[{"key":"a","operator":"In","values":[]}]})
            )
            .is_err()
        );
        assert!(
            LabelSelector::from_json(
                &json!({"matchExpressions":[{"key":"a","operator":"Exists","values":["x"]}]})
            )
            .is_err()
        );
        assert!(LabelSelector::from_json(&json!({"matchLabels":{"a":1}})).is_err());
    }

    fn fget(obj: &Value) -> impl Fn(&str) -> Option<String> + '_ {
        move |f| field_value(obj, f)
    }

    #[test]
    fn field_parse_and_match() {
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "ns"},
            "spec": {"nodeName": "n1", "hostNetwork": true, "priority": 5},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}
        });
        let g = fget(&pod);
        for (sel, want) in [
            ("metadata.name=web-1", true),
            ("metadata.name==web-1", true),
            ("metadata.name!=web-1", false),
            ("metadata.name=web-1,spec.nodeName=n1", true),
            ("metadata.name=web-1,spec.nodeName=n2", false),
            ("spec.hostNetwork=true", true),
            ("spec.priority=5", true),
            ("status.podIP=10.0.0.1", true),
            ("status.podIPs=10.0.0.1\\,fd00::1", true),
            ("spec.missing=", true),
            ("spec.missing!=", false),
            ("spec.missing!=x", true),
            ("", true),
            ("metadata.name=web-1,", true),
        ] {
            let s = FieldSelector::parse(sel).unwrap_or_else(|e| panic!("{sel:?}: {e}"));
            assert_eq!(s.matches(&g), want, "{sel:?}");
        }
    }

    #[test]
    fn field_escapes_and_errors() {
        // An unescaped comma splits terms, and `fd00::1` alone has no operator.
        assert!(FieldSelector::parse("status.podIPs=10.0.0.1,fd00::1").is_err());
        let s = FieldSelector::parse(r"a=x\,y\=z\\").unwrap();
        assert_eq!(s.requirements()[0].value, r"x,y=z\");
        assert_eq!(s.to_string(), r"a=x\,y\=z\\");
        assert_eq!(s.exact_match("a"), Some(r"x,y=z\"));
        let s = FieldSelector::parse(r"a\=b=c").unwrap();
        assert_eq!(s.requirements()[0].field, r"a\=b");
        assert!(matches!(
            FieldSelector::parse("abc"),
            Err(SelectorError::FieldSyntax { .. })
        ));
        assert_eq!(
            FieldSelector::parse("abc").unwrap_err().to_string(),
            "invalid selector: 'abc'; can't understand 'abc'"
        );
        assert!(matches!(
            FieldSelector::parse(r"a=\x"),
            Err(SelectorError::FieldEscape(_))
        ));
        assert!(matches!(
            FieldSelector::parse(r"a=x\"),
            Err(SelectorError::FieldEscape(_))
        ));
        let s = FieldSelector::parse("a!=b,c==d").unwrap();
        assert_eq!(s.requirements()[0].op, FieldOp::NotEq);
        assert_eq!(s.requirements()[1].op, FieldOp::Eq);
        assert_eq!(s.exact_match("a"), None);
        assert_eq!(s.exact_match("c"), Some("d"));
        assert!(FieldSelector::parse("").unwrap().is_empty());
    }

    #[test]
    fn field_values() {
        let ev = json!({
            "involvedObject": {"kind": "Pod", "name": "p"},
            "source": {"component": "kubelet", "host": "n1"},
            "count": 3,
            "spec": {"unschedulable": false}
        });
        assert_eq!(
            field_value(&ev, "involvedObject.kind").as_deref(),
            Some("Pod")
        );
        assert_eq!(field_value(&ev, "source").as_deref(), Some("kubelet"));
        assert_eq!(field_value(&ev, "count").as_deref(), Some("3"));
        assert_eq!(
            field_value(&ev, "spec.unschedulable").as_deref(),
            Some("false")
        );
        assert_eq!(field_value(&ev, "involvedObject.uid"), None);
        assert_eq!(field_value(&ev, "involvedObject"), None);
    }
}
