//! CEL as kube-apiserver evaluates it for JWT authenticators
//! (`staging/src/k8s.io/apiserver/pkg/authentication/cel` on the base
//! environment of `apiserver/pkg/cel/environment`), on cel-rust.
//!
//! - Variables: `claims` (`map(string, dyn)`) in claim validation rules and
//!   claim mappings, `user` (`kubernetes.UserInfo`) in user validation rules.
//! - Libraries: the standard library, the strings extension (`split`, `join`,
//!   `lowerAscii`, `format`, `replace`, `trim`, `indexOf`, ...), optional
//!   values (`claims.?x`, `orValue`), and kube-apiserver's lists, sets, regex,
//!   URL, IP and CIDR libraries ([`library`]). Timestamps and durations are not
//!   built in (cel-rust would need chrono and the time-zone database for them);
//!   the Quantity, format, semver and authorization libraries are not carried
//!   either. Using any of them is a load error naming the function.
//! - Compile time: every expression is parsed, type-checked ([`check`]) and its
//!   output type checked (validation rules must be `bool`) when the
//!   configuration loads. Field names escaped the Kubernetes way
//!   (`claims.kubernetes__dot__io`) select the unescaped key, as in kube-apiserver.
//! - Cost: kube-apiserver stops an evaluation past 1,000,000 cost units. Here
//!   an expression costs one unit per node, and each comprehension iteration the
//!   size of its body, counted as it runs ([`cost`]); past the same limit the
//!   token is refused.
//! - Evaluation: the compiled expressions are rewritten into shapes cel-rust
//!   evaluates faster, with the same results ([`rewrite`], [`shortcut`]).

mod check;
mod cost;
mod library;
mod net;
mod rewrite;
mod shortcut;
mod url;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use cel::common::ast::{CallExpr, EntryExpr, Expr, IdedExpr, LiteralValue, SourceInfo, operators};
use cel::common::types::{CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, Kind};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, ExecutionError, Value};

use self::check::{Checker, Ty};

/// Which variable an expression sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `claims`: claim validation rules and claim mappings.
    Claims,
    /// `user`: user validation rules.
    User,
}

/// What an expression must evaluate to, checked at load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Validation rules.
    Bool,
    /// Mappings: checked when they run (`claims` is `dyn`).
    Any,
}

/// The CEL environment: built once per load, read-only afterwards.
pub struct Cel {
    env: Arc<Env>,
}

impl Default for Cel {
    fn default() -> Self {
        Self::new()
    }
}

impl Cel {
    /// The standard library, the strings extension and kube-apiserver's libraries.
    pub fn new() -> Self {
        let mut env = Env::stdlib();
        // The overloads are static and unique: a conflict is a bug here, found
        // by the unit tests, not something a configuration can cause.
        let registered = env
            .add_extension(cel::extensions::strings)
            .and_then(|()| library::register(&mut env))
            .and_then(|()| shortcut::register(&mut env));
        debug_assert!(registered.is_ok(), "{registered:?}");
        Self { env: Arc::new(env) }
    }

    /// Parse and check `source` for `scope`, requiring `want`.
    ///
    /// # Errors
    ///
    /// Why it does not compile (a syntax, type or unknown-function error, with
    /// its position), or that it does not evaluate to `want`.
    pub fn compile(&self, source: &str, scope: Scope, want: Want) -> Result<Expression, String> {
        if source.trim().is_empty() {
            return Err("the expression is empty".into());
        }
        let (mut expr, positions) = self
            .env
            .parser()
            .parse_with_source_info(source)
            .map_err(|e| format!("does not parse: {}", one_line(&e.to_string())))?;
        let uses_email = uses_select(&expr, "email");
        let uses_email_verified = uses_select(&expr, "email_verified");
        unescape_fields(&mut expr);
        let output = Checker::new(scope)
            .check(&expr)
            .map_err(|e| format!("does not compile: {}{}", e.message, at(&positions, e.id, source)))?;
        if want == Want::Bool && output != Ty::Bool {
            return Err(format!("must evaluate to bool, not {output}"));
        }
        let mut reads = BTreeSet::new();
        let reads_all_claims = scope == Scope::Claims && claims_read(&expr, &mut reads);
        let mut next_id = max_id(&expr) + 1;
        let base_cost = nodes(&expr);
        shortcut::apply(&mut expr, &mut next_id);
        cost::ticks(&mut expr, &mut next_id);
        let variable = match scope {
            Scope::Claims => "claims",
            Scope::User => "user",
        };
        rewrite::index_selects(&mut expr, variable, &mut next_id);
        Ok(Expression {
            source: source.to_string(),
            expr,
            base_cost,
            reads,
            reads_all_claims,
            uses_email,
            uses_email_verified,
        })
    }
}

/// A compiled expression.
#[derive(Debug)]
pub struct Expression {
    /// As written in the configuration.
    pub source: String,
    expr: IdedExpr,
    /// Its nodes, charged once per evaluation.
    base_cost: u64,
    /// The top-level claims it reads by name (`claims.x`, `claims["x"]`).
    pub reads: BTreeSet<String>,
    /// Whether it also uses `claims` otherwise (`size(claims)`, `claims[k]`,
    /// `claims.exists(...)`), so that every claim must be bound.
    pub reads_all_claims: bool,
    /// Whether it selects `claims.email` (kube-apiserver's rule on unverified email).
    pub uses_email: bool,
    /// Whether it selects `claims.email_verified`.
    pub uses_email_verified: bool,
}

impl Expression {
    /// Evaluate against `input`.
    ///
    /// # Errors
    ///
    /// The evaluation error (a missing claim, a failed conversion, the cost limit).
    pub fn evaluate(&self, cel: &Cel, input: &Input<'_>) -> Result<Output, String> {
        self.run(cel, input, Output::of)
    }

    /// Evaluate against `input`, as a [`Value`].
    #[cfg(test)]
    pub fn value(&self, cel: &Cel, input: &Input<'_>) -> Result<Value, String> {
        self.run(cel, input, |v| Value::try_from(v))?.map_err(|e| describe(&e))
    }

    /// Evaluate and `read` the result where it lies: converting it to a
    /// [`Value`] first would copy every string of it.
    fn run<T>(&self, cel: &Cel, input: &Input<'_>, read: impl FnOnce(&dyn Val) -> T) -> Result<T, String> {
        cost::start(self.base_cost);
        let mut context = Context::with_env(Arc::clone(&cel.env));
        context.set_variable_resolver(input);
        let result = Value::resolve_val(&self.expr, &context).map(|value| read(value.as_ref()));
        if cost::exceeded() {
            return Err(cost::exceeded_message());
        }
        result.map_err(|e| describe(&e))
    }
}

/// What an expression evaluated to, as the mappings and rules tell results apart.
#[derive(Debug, PartialEq)]
pub enum Output {
    Bool(bool),
    String(String),
    Null,
    /// A list: its strings, `None` when an item is not a string.
    List(Option<Vec<String>>),
    /// Anything else, by its kind (`an int`), for messages.
    Other(&'static str),
}

impl Output {
    fn of(value: &dyn Val) -> Self {
        let other = match value.get_type().kind() {
            Kind::Boolean => {
                return value.downcast_ref::<CelBool>().map_or(Output::Other("a bool"), |b| Output::Bool(*b.inner()));
            }
            Kind::String => {
                return value
                    .downcast_ref::<CelString>()
                    .map_or(Output::Other("a string"), |s| Output::String(s.inner().to_string()));
            }
            Kind::NullType => return Output::Null,
            Kind::List => {
                let Some(items) = value.as_iterable() else { return Output::Other("a list") };
                let mut items = items.iter();
                let mut strings = Vec::new();
                while let Some(item) = items.next() {
                    match item.downcast_ref::<CelString>() {
                        Some(s) => strings.push(s.inner().to_string()),
                        None => return Output::List(None),
                    }
                }
                return Output::List(Some(strings));
            }
            Kind::Map => "a map",
            Kind::Int => "an int",
            Kind::UInt => "a uint",
            Kind::Double => "a double",
            Kind::Bytes => "bytes",
            _ => "another type",
        };
        Output::Other(other)
    }

    /// Its kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Output::Bool(_) => "a bool",
            Output::String(_) => "a string",
            Output::Null => "null",
            Output::List(_) => "a list",
            Output::Other(kind) => kind,
        }
    }
}

/// Error texts in kube-apiserver's wording where cel-rust's differ.
fn describe(error: &ExecutionError) -> String {
    match error {
        ExecutionError::NoSuchKey(key) => format!("no such key: {key}"),
        other => other.to_string(),
    }
}

/// The variable an expression is evaluated with, converted once per review
/// and shared by every expression of the review. Its strings borrow from the
/// claims (or the user) it was made of.
pub struct Input<'a> {
    name: &'static str,
    value: Box<dyn Val + 'a>,
}

impl VariableResolver for Input<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        if variable == self.name { Some(CowVal::Borrowed(self.value.as_ref())) } else { cost::tick(variable) }
    }
}

/// Which claims the expressions of an issuer see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claims {
    /// Every claim: an expression uses `claims` other than by name.
    All,
    /// Only these: no expression can read another, so the others are not converted.
    Named(BTreeSet<String>),
}

impl Claims {
    /// The claims `expressions` read.
    pub fn read_by<'e>(expressions: impl IntoIterator<Item = &'e Expression>) -> Self {
        let mut names = BTreeSet::new();
        for expression in expressions {
            if expression.reads_all_claims {
                return Claims::All;
            }
            names.extend(expression.reads.iter().cloned());
        }
        Claims::Named(names)
    }
}

impl<'a> Input<'a> {
    /// `claims`, from the token's payload: those of `wanted` it has.
    pub fn claims(claims: &'a serde_json::Map<String, serde_json::Value>, wanted: &Claims) -> Self {
        let entry =
            |(k, v): (&'a String, &'a serde_json::Value)| (CelMapKey::String(CelString::from(k.as_str())), json(v));
        let map: HashMap<CelMapKey<'a>, Box<dyn Val + 'a>> = match wanted {
            Claims::All => claims.iter().map(entry).collect(),
            Claims::Named(names) => names.iter().filter_map(|name| claims.get_key_value(name)).map(entry).collect(),
        };
        Self { name: "claims", value: Box::new(CelMap::from(map)) }
    }

    /// `user`, as kube-apiserver builds it for user validation rules (every
    /// field present, empty when unset).
    pub fn user(
        username: &'a str,
        uid: &'a str,
        groups: &'a [String],
        extra: &'a BTreeMap<String, Vec<String>>,
    ) -> Self {
        fn string<'a>(s: &'a str) -> Box<dyn Val + 'a> {
            Box::new(CelString::from(s))
        }
        fn strings<'a>(items: &'a [String]) -> Box<dyn Val + 'a> {
            Box::new(CelList::from(items.iter().map(|s| string(s)).collect::<Vec<_>>()))
        }
        let key = |s: &'a str| CelMapKey::String(CelString::from(s));
        let extra: HashMap<CelMapKey<'a>, Box<dyn Val + 'a>> =
            extra.iter().map(|(k, v)| (key(k), strings(v))).collect();
        let fields: HashMap<CelMapKey<'a>, Box<dyn Val + 'a>> = HashMap::from([
            (key("username"), string(username)),
            (key("uid"), string(uid)),
            (key("groups"), strings(groups)),
            (key("extra"), Box::new(CelMap::from(extra))),
        ]);
        Self { name: "user", value: Box::new(CelMap::from(fields)) }
    }
}

/// A JSON claim as kube-apiserver hands it to CEL: whole numbers that fit
/// are `int`, other numbers `double`.
fn json(value: &serde_json::Value) -> Box<dyn Val + '_> {
    match value {
        serde_json::Value::Null => Box::new(CelNull),
        serde_json::Value::Bool(b) => Box::new(CelBool::from(*b)),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Box::new(CelInt::from(i)),
            None => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        },
        serde_json::Value::String(s) => Box::new(CelString::from(s.as_str())),
        serde_json::Value::Array(items) => Box::new(CelList::from(items.iter().map(json).collect::<Vec<_>>())),
        serde_json::Value::Object(fields) => Box::new(CelMap::from(
            fields
                .iter()
                .map(|(k, v)| (CelMapKey::String(CelString::from(k.as_str())), json(v)))
                .collect::<HashMap<_, _>>(),
        )),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// ` at line:column` of node `id`, when known.
fn at(positions: &SourceInfo, id: u64, source: &str) -> String {
    let Some((start, _)) = positions.offset_for(id) else { return String::new() };
    let start = start as usize;
    let before = source.get(..start.min(source.len())).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!(" (at {line}:{column})")
}

fn children(expr: &IdedExpr) -> Vec<&IdedExpr> {
    match &expr.expr {
        Expr::Call(call) => call.target.iter().map(|t| t.as_ref()).chain(call.args.iter()).collect(),
        Expr::Select(select) => vec![select.operand.as_ref()],
        Expr::List(list) => list.elements.iter().collect(),
        Expr::Map(map) => map
            .entries
            .iter()
            .flat_map(|e| match &e.expr {
                EntryExpr::MapEntry(entry) => vec![&entry.key, &entry.value],
                EntryExpr::StructField(field) => vec![&field.value],
            })
            .collect(),
        Expr::Struct(s) => s
            .entries
            .iter()
            .flat_map(|e| match &e.expr {
                EntryExpr::MapEntry(entry) => vec![&entry.key, &entry.value],
                EntryExpr::StructField(field) => vec![&field.value],
            })
            .collect(),
        Expr::Comprehension(c) => vec![&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result],
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
    }
}

/// `children`, mutably.
fn children_mut(expr: &mut IdedExpr) -> Vec<&mut IdedExpr> {
    match &mut expr.expr {
        Expr::Call(call) => call.target.iter_mut().map(|t| t.as_mut()).chain(call.args.iter_mut()).collect(),
        Expr::Select(select) => vec![select.operand.as_mut()],
        Expr::List(list) => list.elements.iter_mut().collect(),
        Expr::Map(map) => map.entries.iter_mut().flat_map(|e| entry_children(&mut e.expr)).collect(),
        Expr::Struct(s) => s.entries.iter_mut().flat_map(|e| entry_children(&mut e.expr)).collect(),
        Expr::Comprehension(c) => {
            vec![&mut c.iter_range, &mut c.accu_init, &mut c.loop_cond, &mut c.loop_step, &mut c.result]
        }
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
    }
}

fn entry_children(entry: &mut EntryExpr) -> Vec<&mut IdedExpr> {
    match entry {
        EntryExpr::MapEntry(entry) => vec![&mut entry.key, &mut entry.value],
        EntryExpr::StructField(field) => vec![&mut field.value],
    }
}

fn max_id(expr: &IdedExpr) -> u64 {
    children(expr).into_iter().map(max_id).fold(expr.id, u64::max)
}

fn nodes(expr: &IdedExpr) -> u64 {
    1 + children(expr).into_iter().map(nodes).sum::<u64>()
}

fn is_claims(expr: &IdedExpr) -> bool {
    matches!(&expr.expr, Expr::Ident(name) if name == "claims")
}

/// Whether `expr` selects `claims.<field>`, plainly, in `has()` or with
/// `.?`, anywhere: kube-apiserver's test for the email rule (an index,
/// `claims["email"]`, does not count there either).
fn uses_select(expr: &IdedExpr, field: &str) -> bool {
    let direct = match &expr.expr {
        Expr::Select(select) => is_claims(&select.operand) && select.field == field,
        Expr::Call(CallExpr { func_name, target: None, args }) if func_name == operators::OPT_SELECT => {
            matches!(&args[..], [operand, IdedExpr { expr: Expr::Literal(LiteralValue::String(f)), .. }]
                if is_claims(operand) && f.inner() == field)
        }
        _ => false,
    };
    direct || children(expr).into_iter().any(|c| uses_select(c, field))
}

/// The claims `expr` reads by name at the top level; whether it also uses
/// `claims` otherwise (then it can read any claim).
fn claims_read(expr: &IdedExpr, reads: &mut BTreeSet<String>) -> bool {
    match &expr.expr {
        Expr::Select(select) if is_claims(&select.operand) => {
            reads.insert(select.field.clone());
            return false;
        }
        Expr::Call(CallExpr { func_name, target: None, args })
            if func_name == operators::OPT_SELECT
                || func_name == operators::INDEX
                || func_name == operators::OPT_INDEX =>
        {
            if let [operand, IdedExpr { expr: Expr::Literal(LiteralValue::String(name)), .. }] = &args[..]
                && is_claims(operand)
            {
                reads.insert(name.inner().to_string());
                return false;
            }
        }
        Expr::Ident(_) if is_claims(expr) => return true,
        _ => {}
    }
    // Every child, not the first that uses `claims` whole: their names are read too.
    let mut all = false;
    for child in children(expr) {
        all |= claims_read(child, reads);
    }
    all
}

/// kube-apiserver's `Unescape` of a CEL identifier: `__dot__` is `.`, `__dash__`
/// `-`, `__slash__` `/`, `__underscores__` `__`, and `__in__` and the other
/// reserved words stand alone for themselves. `None` for an invalid escape.
pub fn unescape(escaped: &str) -> Option<String> {
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
    if !escaped.contains("__") {
        return Some(escaped.to_string());
    }
    let mut out = String::new();
    let mut rest = escaped;
    while let Some(start) = rest.find("__") {
        let after = &rest[start + 2..];
        // An escape is `__` + a word without `_` + `__`.
        let Some(end) = after.find("__") else { break };
        let word = &after[..end];
        if word.is_empty() || word.contains('_') {
            out.push_str(&rest[..start + 1]);
            rest = &rest[start + 1..];
            continue;
        }
        out.push_str(&rest[..start]);
        match word {
            "underscores" => out.push_str("__"),
            "dot" => out.push('.'),
            "dash" => out.push('-'),
            "slash" => out.push('/'),
            // A reserved word is escaped only as the whole identifier.
            reserved
                if RESERVED.contains(&reserved)
                    && rest.len() == escaped.len()
                    && start == 0
                    && end + 4 == rest.len() =>
            {
                out.push_str(reserved)
            }
            _ => return None,
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Some(out)
}

/// Select the unescaped key wherever a field name is escaped.
fn unescape_fields(expr: &mut IdedExpr) {
    match &mut expr.expr {
        Expr::Select(select) => {
            if let Some(field) = unescape(&select.field) {
                select.field = field;
            }
            unescape_fields(&mut select.operand);
        }
        Expr::Call(call) => {
            if call.func_name == operators::OPT_SELECT
                && let Some(IdedExpr { expr: Expr::Literal(LiteralValue::String(field)), .. }) = call.args.get_mut(1)
                && let Some(unescaped) = unescape(field.inner())
            {
                *field = unescaped.into();
            }
            if let Some(target) = &mut call.target {
                unescape_fields(target);
            }
            call.args.iter_mut().for_each(unescape_fields);
        }
        Expr::List(list) => list.elements.iter_mut().for_each(unescape_fields),
        Expr::Map(map) => {
            for entry in &mut map.entries {
                if let EntryExpr::MapEntry(entry) = &mut entry.expr {
                    unescape_fields(&mut entry.key);
                    unescape_fields(&mut entry.value);
                }
            }
        }
        Expr::Comprehension(c) => {
            for part in [&mut c.iter_range, &mut c.accu_init, &mut c.loop_cond, &mut c.loop_step, &mut c.result] {
                unescape_fields(part);
            }
        }
        Expr::Struct(_) | Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(source: &str, json: serde_json::Value) -> Result<Value, String> {
        let cel = Cel::new();
        let expression = cel.compile(source, Scope::Claims, Want::Any)?;
        let claims = json.as_object().unwrap();
        expression.value(&cel, &Input::claims(claims, &Claims::read_by([&expression])))
    }

    #[test]
    fn kube_expressions_evaluate() {
        let c = serde_json::json!({"scope": "api:read api:write", "n": 3, "groups": ["a", "b"], "kubernetes.io": {"ns": "k"}, "f": 1.5});
        let cases: &[(&str, Value)] = &[
            (r#"claims.scope.split(" ").exists(s, s == "api:read")"#, Value::Bool(true)),
            ("claims.n + 1", Value::Int(4)),
            ("claims.n < 3.5", Value::Bool(true)),
            ("claims.kubernetes__dot__io.ns", Value::from("k")),
            ("has(claims.kubernetes__dot__io.ns)", Value::Bool(true)),
            ("claims.?missing.orValue('d')", Value::from("d")),
            ("claims[?'kubernetes.io'][?'x'].orValue(5)", Value::Int(5)),
            ("claims.groups.map(g, 'x:' + g).join(',')", Value::from("x:a,x:b")),
            ("sets.contains(claims.groups, ['a'])", Value::Bool(true)),
            ("sets.equivalent(claims.groups, ['b', 'a'])", Value::Bool(true)),
            ("sets.intersects(claims.groups, ['c'])", Value::Bool(false)),
            ("'abc'.matches('^a.c$')", Value::Bool(true)),
            ("'a1b22'.findAll('[0-9]+')", Value::List(Arc::new(vec![Value::from("1"), Value::from("22")]))),
            ("[3, 1, 2].max() == 3 && [1, 2].isSorted() && [1, 2, 3].sum() == 6", Value::Bool(true)),
            ("[1, 2, 2].lastIndexOf(2) == 2 && 'abcb'.lastIndexOf('b') == 3", Value::Bool(true)),
            ("url('https://a.example:8443/p?x=1').getQuery()['x'][0]", Value::from("1")),
            ("url('https://a.example:8443/p').getPort()", Value::from("8443")),
            ("ip('10.0.0.1').family() == 4 && cidr('10.0.0.0/8').containsIP('10.1.2.3')", Value::Bool(true)),
            ("string(cidr('10.1.0.0/16').masked()) == '10.1.0.0/16' && ip('::1') == ip('0:0::1')", Value::Bool(true)),
            ("ip.isCanonical('2001:db8::1') && !ip.isCanonical('2001:DB8::1')", Value::Bool(true)),
            ("'%s is %d'.format([dyn('x'), 1])", Value::from("x is 1")),
            ("string(int(claims.f * 2.0))", Value::from("3")),
            ("type(claims.n) == int", Value::Bool(true)),
        ];
        for (source, want) in cases {
            assert_eq!(run(source, c.clone()).as_ref(), Ok(want), "{source}");
        }
        assert_eq!(run("claims.missing == 'x'", c.clone()), Err("no such key: missing".into()));
    }

    #[test]
    fn compile_errors_name_the_problem() {
        let cel = Cel::new();
        let err = |s: &str, scope, want| cel.compile(s, scope, want).unwrap_err();
        assert!(
            err("foo.bar", Scope::Claims, Want::Any).contains("undeclared reference to `foo`"),
            "{}",
            err("foo.bar", Scope::Claims, Want::Any)
        );
        assert!(err("claims.foo", Scope::Claims, Want::Bool).contains("must evaluate to bool, not dyn"));
        assert!(err("user.username", Scope::User, Want::Bool).contains("must evaluate to bool, not string"));
        assert!(err("user.name == 'x'", Scope::User, Want::Bool).contains("no field `name`"));
        assert!(err("claims.x.nope()", Scope::Claims, Want::Any).contains("`nope`"));
        assert!(err("1 + 'a'", Scope::Claims, Want::Any).contains("no matching overload"));
        assert!(err("[1, 'a']", Scope::Claims, Want::Any).contains("list literal"));
        assert!(
            err("'%s'.format(['x', 1])", Scope::Claims, Want::Any).contains("list literal"),
            "homogeneous, as in kube-apiserver"
        );
        assert!(err("claims.(", Scope::Claims, Want::Any).contains("does not parse"));
        assert!(err("user.username == 'a'", Scope::Claims, Want::Bool).contains("only userValidationRules"));
        assert!(err("claims.x.matches('(')", Scope::Claims, Want::Any).contains("invalid regular expression"));
        assert!(err("timestamp(claims.t)", Scope::Claims, Want::Any).contains("timestamp and duration"));
        assert!(err("quantity('1Gi')", Scope::Claims, Want::Any).contains("Quantity"));
        assert!(err("[1].flatten()", Scope::Claims, Want::Any).contains("`flatten`"));
        assert!(err("math.greatest(1, 2)", Scope::Claims, Want::Any).contains("extension library"));
        assert!(cel.compile("claims[?'a'].orValue(true)", Scope::Claims, Want::Bool).is_ok());
        assert!(
            cel.compile("'claus' in user.groups && user.extra.a__dot__b.size() == 1", Scope::User, Want::Bool).is_ok()
        );
    }

    #[test]
    fn comprehensions_stop_at_the_cost_limit() {
        let c = serde_json::json!({"l": (0..1000).collect::<Vec<_>>()});
        assert_eq!(run("claims.l.all(x, x >= 0)", c.clone()), Ok(Value::Bool(true)));
        let err = run("claims.l.all(x, claims.l.all(y, claims.l.all(z, z >= 0)))", c.clone()).unwrap_err();
        assert!(err.contains("cost limit of 1000000"), "{err}");
        // An `||` does not make it true: past the limit, the evaluation is over.
        let err = run("claims.l.all(x, claims.l.all(y, claims.l.all(z, z >= 0))) || true", c).unwrap_err();
        assert!(err.contains("cost limit of 1000000"), "{err}");
    }

    #[test]
    fn all_and_exists_absorb_an_element_error_as_cel_go_does() {
        let c = serde_json::json!({"l": [1, "b"]});
        assert_eq!(run("claims.l.exists(x, x.startsWith('b'))", c.clone()), Ok(Value::Bool(true)));
        assert_eq!(run("claims.l.all(x, x.startsWith('a'))", c.clone()), Ok(Value::Bool(false)));
        assert!(run("claims.l.exists(x, x.startsWith('c'))", c.clone()).is_err());
        assert_eq!(
            run("claims.l.map(x, x == 1)", c),
            Ok(Value::List(Arc::new(vec![Value::Bool(true), Value::Bool(false)])))
        );
    }

    #[test]
    fn an_exists_over_a_literal_answers_as_the_loop_does() {
        let c = serde_json::json!({"l": ["a", 1, "b"], "n": [1, 2], "m": {"k": 1}, "s": "a b", "e": [],
            "big": (0..200_000).collect::<Vec<_>>()});
        for (range, literal) in [
            ("claims.l", "'b'"),
            ("claims.l", "1"),
            ("claims.l", "'z'"),
            ("claims.n", "1.0"),
            ("claims.n", "'1'"),
            ("claims.m", "'k'"),
            ("claims.s", "'a'"),
            ("claims.e", "'a'"),
            ("claims.missing", "1"),
            ("claims.s.split(' ')", "'b'"),
            ("claims.big", "199999"),
            ("claims.big", "-1"),
        ] {
            for (shortcut, looped) in [
                (format!("{range}.exists(v, v == {literal})"), format!("{range}.exists(v, v == {literal} || false)")),
                (format!("{range}.exists(v, {literal} == v)"), format!("{range}.exists(v, false || {literal} == v)")),
            ] {
                let (a, b) = (run(&shortcut, c.clone()), run(&looped, c.clone()));
                assert_eq!(a.is_ok(), b.is_ok(), "{shortcut}: {a:?} {b:?}");
                assert_eq!(a.as_ref().ok(), b.as_ref().ok(), "{shortcut}");
                assert_eq!(
                    a.err().map(|e| e.replace("|| false", "").replace("false || ", "")),
                    b.err().map(|e| e.replace("|| false", "").replace("false || ", "")),
                    "{shortcut}"
                );
            }
        }
    }

    #[test]
    fn only_the_claims_read_are_bound_unless_claims_is_used_whole() {
        let cel = Cel::new();
        let compile = |s: &str| cel.compile(s, Scope::Claims, Want::Any).unwrap();
        let named = [compile("claims.a + claims[?'b'].orValue(0)"), compile("has(claims.c) && claims['d'] == 1")];
        let names = |n: &[&str]| Claims::Named(n.iter().map(|s| s.to_string()).collect());
        assert_eq!(Claims::read_by(&named), names(&["a", "b", "c", "d"]));
        for whole in
            ["size(claims)", "claims.exists(k, k == 'z')", "'z' in claims", "claims[claims.k]", "[claims][0].z"]
        {
            assert_eq!(Claims::read_by([&named[0], &compile(whole)]), Claims::All, "{whole}");
        }
        // A comprehension variable of that name reads no claim, but `claims` itself still counts.
        assert_eq!(Claims::read_by([&compile("[{'z': 1}].exists(claims, claims.z == 1)")]), names(&["z"]));
        let c = serde_json::json!({"a": 1, "k": "z", "z": 2, "n": 3});
        assert_eq!(run("size(claims)", c.clone()), Ok(Value::Int(4)));
        assert_eq!(run("claims[claims.k]", c.clone()), Ok(Value::Int(2)));
        assert_eq!(run("claims.a + claims.z", c.clone()), Ok(Value::Int(3)));
        assert_eq!(run("claims.missing", c), Err("no such key: missing".into()));
    }

    #[test]
    fn escapes_unescape_as_kubernetes_does() {
        assert_eq!(unescape("a__dot__b__slash__c__dash__d").as_deref(), Some("a.b/c-d"));
        assert_eq!(unescape("x__underscores__y").as_deref(), Some("x__y"));
        assert_eq!(unescape("__in__").as_deref(), Some("in"));
        assert_eq!(unescape("plain_name").as_deref(), Some("plain_name"));
        assert_eq!(unescape("a__bogus__b"), None);
        assert_eq!(unescape("a__b_c__d").as_deref(), Some("a__b_c__d"));
    }
}
