//! The type check kube-apiserver's CEL compiler runs before it accepts an
//! expression (cel-go's checker, reduced to what these expressions can
//! name): every identifier and function must exist in the environment, calls
//! must fit an overload, literal lists and maps must be homogeneous, regex
//! literals must compile, and the expression's type must be what its field
//! asks for.
//!
//! `claims` is `map(string, dyn)`, so most of a claim expression is `dyn` and
//! checked when it runs, as in kube-apiserver. Where cel-go's inference is
//! subtler than this checker's (a `dyn` branch against a typed one), this
//! checker takes the typed side: it may accept an expression cel-go rejects,
//! never the reverse, and a value of the wrong type is still refused when the
//! expression runs.

use std::fmt;

use cel::common::ast::{CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue, operators};

use super::Scope;

/// A CEL type, as far as the checker tells them apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ty {
    /// Known only when the expression runs (`claims.x`).
    Dyn,
    Null,
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    List(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
    Optional(Box<Ty>),
    /// A type value (`int`, `type(x)`).
    Type,
    /// `user` in `userValidationRules`: kube-apiserver's `kubernetes.UserInfo`.
    User,
    /// kube-apiserver's `net.IP` (`ip("10.0.0.1")`).
    Ip,
    /// kube-apiserver's `net.CIDR` (`cidr("10.0.0.0/8")`).
    Cidr,
    /// kube-apiserver's `kubernetes.URL` (`url("https://a.example/b")`).
    Url,
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Dyn => f.write_str("dyn"),
            Ty::Null => f.write_str("null_type"),
            Ty::Bool => f.write_str("bool"),
            Ty::Int => f.write_str("int"),
            Ty::Uint => f.write_str("uint"),
            Ty::Double => f.write_str("double"),
            Ty::String => f.write_str("string"),
            Ty::Bytes => f.write_str("bytes"),
            Ty::List(t) => write!(f, "list({t})"),
            Ty::Map(k, v) => write!(f, "map({k}, {v})"),
            Ty::Optional(t) => write!(f, "optional_type({t})"),
            Ty::Type => f.write_str("type"),
            Ty::User => f.write_str("kubernetes.UserInfo"),
            Ty::Ip => f.write_str("net.IP"),
            Ty::Cidr => f.write_str("net.CIDR"),
            Ty::Url => f.write_str("kubernetes.URL"),
        }
    }
}

fn list(t: Ty) -> Ty {
    Ty::List(Box::new(t))
}

fn map(k: Ty, v: Ty) -> Ty {
    Ty::Map(Box::new(k), Box::new(v))
}

fn optional(t: Ty) -> Ty {
    Ty::Optional(Box::new(t))
}

fn is_numeric(t: &Ty) -> bool {
    matches!(t, Ty::Int | Ty::Uint | Ty::Double)
}

/// Whether a value of type `arg` may be passed where `param` is expected.
fn assignable(param: &Ty, arg: &Ty) -> bool {
    match (param, arg) {
        (Ty::Dyn, _) | (_, Ty::Dyn) => true,
        (Ty::List(p), Ty::List(a)) | (Ty::Optional(p), Ty::Optional(a)) => assignable(p, a),
        (Ty::Map(pk, pv), Ty::Map(ak, av)) => assignable(pk, ak) && assignable(pv, av),
        (p, a) => p == a,
    }
}

/// The common type of two values that must agree (list and map literal
/// elements, list concatenation), or `None` when they cannot.
fn join(a: &Ty, b: &Ty) -> Option<Ty> {
    match (a, b) {
        _ if a == b => Some(a.clone()),
        (Ty::Dyn, _) | (_, Ty::Dyn) => Some(Ty::Dyn),
        (Ty::List(x), Ty::List(y)) => Some(list(join(x, y)?)),
        (Ty::Optional(x), Ty::Optional(y)) => Some(optional(join(x, y)?)),
        (Ty::Map(k1, v1), Ty::Map(k2, v2)) => Some(map(join(k1, k2)?, join(v1, v2)?)),
        _ => None,
    }
}

/// The type of either of two results (`c ? a : b`, `opt.orValue(d)`): the
/// typed one when the other is `dyn` (see the module doc).
fn either(a: &Ty, b: &Ty) -> Option<Ty> {
    match (a, b) {
        (Ty::Dyn, other) | (other, Ty::Dyn) => Some(other.clone()),
        (Ty::Null, _) | (_, Ty::Null) => Some(Ty::Dyn),
        _ => join(a, b),
    }
}

/// Whether `==` accepts the pair (kube-apiserver compares numbers across types).
fn comparable(a: &Ty, b: &Ty) -> bool {
    match (a, b) {
        (Ty::Dyn | Ty::Null, _) | (_, Ty::Dyn | Ty::Null) => true,
        _ if is_numeric(a) && is_numeric(b) => true,
        (Ty::List(x), Ty::List(y)) | (Ty::Optional(x), Ty::Optional(y)) => comparable(x, y),
        (Ty::Map(k1, v1), Ty::Map(k2, v2)) => comparable(k1, k2) && comparable(v1, v2),
        _ => a == b,
    }
}

/// Whether `<` and friends accept the pair.
fn orderable(a: &Ty, b: &Ty) -> bool {
    let kind = |t: &Ty| matches!(t, Ty::Dyn | Ty::Int | Ty::Uint | Ty::Double | Ty::String | Ty::Bytes | Ty::Bool);
    kind(a) && kind(b) && (a == b || matches!(a, Ty::Dyn) || matches!(b, Ty::Dyn) || (is_numeric(a) && is_numeric(b)))
}

/// Namespaces of global functions written as `ns.f(...)`.
const NAMESPACES: &[&str] = &["sets", "strings", "optional", "ip", "lists", "math", "base64", "format"];

/// Functions of kube-apiserver's CEL libraries this validator does not carry,
/// with what to say about them.
fn unsupported(name: &str) -> Option<&'static str> {
    Some(match name {
        "timestamp" | "duration" | "getFullYear" | "getMonth" | "getDayOfYear" | "getDayOfMonth" | "getDate"
        | "getDayOfWeek" | "getHours" | "getMinutes" | "getSeconds" | "getMilliseconds" => {
            "timestamp and duration values are not available in this validator's CEL; compare the numeric time claims (claims.exp, claims.iat) instead"
        }
        "quantity" | "isQuantity" => "kube-apiserver's Quantity library is not available in this validator's CEL",
        "semver" | "isSemver" => "kube-apiserver's semver library is not available in this validator's CEL",
        "authorizer" | "serviceAccount" | "group" | "resource" | "subresource" | "namespace" | "check" => {
            "kube-apiserver's authorization library has no authorizer in authentication expressions"
        }
        n if n.starts_with("format.") => {
            "kube-apiserver's format library (format.named, format.dns1123Label, ...) is not available in this validator's CEL"
        }
        n if n.starts_with("math.") || n.starts_with("base64.") || n.starts_with("lists.") => {
            "kube-apiserver does not enable this extension library for authentication expressions"
        }
        _ => return None,
    })
}

/// A check failure: the node it is about and why.
#[derive(Debug)]
pub struct CheckError {
    pub id: u64,
    pub message: String,
}

type Checked = Result<Ty, CheckError>;

/// Checks one expression in one scope.
pub struct Checker {
    scope: Scope,
    /// Comprehension variables in scope, innermost last.
    locals: Vec<(String, Ty)>,
}

impl Checker {
    pub fn new(scope: Scope) -> Self {
        Self { scope, locals: Vec::new() }
    }

    /// The type of `expr`, or the first error in it.
    pub fn check(&mut self, expr: &IdedExpr) -> Checked {
        let fail = |message: String| Err(CheckError { id: expr.id, message });
        match &expr.expr {
            Expr::Unspecified => fail("incomplete expression".into()),
            Expr::Literal(literal) => Ok(match literal {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Bytes(_) => Ty::Bytes,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::Int(_) => Ty::Int,
                LiteralValue::Null => Ty::Null,
                LiteralValue::String(_) => Ty::String,
                LiteralValue::UInt(_) => Ty::Uint,
            }),
            Expr::Ident(name) => self.ident(name).map_or_else(|| fail(self.undeclared(name)), Ok),
            Expr::Select(select) => {
                let operand = self.check(&select.operand)?;
                let field =
                    select_type(&operand, &select.field).map_err(|message| CheckError { id: expr.id, message })?;
                Ok(if select.test { Ty::Bool } else { field })
            }
            Expr::List(literal) => {
                let mut element = None;
                for (i, item) in literal.elements.iter().enumerate() {
                    let mut t = self.check(item)?;
                    if literal.optional_indices.contains(&i) {
                        t = match t {
                            Ty::Optional(inner) => *inner,
                            Ty::Dyn => Ty::Dyn,
                            other => {
                                return fail(format!("an optional list element `?x` must be optional, not {other}"));
                            }
                        };
                    }
                    element = Some(match element {
                        None => t,
                        Some(previous) => join(&previous, &t).ok_or_else(|| CheckError {
                            id: item.id,
                            message: format!("a list literal holds one type: {previous} and {t} do not mix"),
                        })?,
                    });
                }
                Ok(list(element.unwrap_or(Ty::Dyn)))
            }
            Expr::Map(literal) => {
                let (mut key, mut value): (Option<Ty>, Option<Ty>) = (None, None);
                for entry in &literal.entries {
                    let EntryExpr::MapEntry(entry) = &entry.expr else {
                        return fail("a map literal holds key: value entries".into());
                    };
                    let k = self.check(&entry.key)?;
                    let mut v = self.check(&entry.value)?;
                    if entry.optional {
                        v = match v {
                            Ty::Optional(inner) => *inner,
                            Ty::Dyn => Ty::Dyn,
                            other => {
                                return fail(format!(
                                    "an optional map entry `?k: v` needs an optional value, not {other}"
                                ));
                            }
                        };
                    }
                    let mix = |what: &str, a: &Ty, b: &Ty| CheckError {
                        id: entry.key.id,
                        message: format!("a map literal's {what}s have one type: {a} and {b} do not mix"),
                    };
                    key = Some(match key {
                        None => k,
                        Some(previous) => join(&previous, &k).ok_or_else(|| mix("key", &previous, &k))?,
                    });
                    value = Some(match value {
                        None => v,
                        Some(previous) => join(&previous, &v).ok_or_else(|| mix("value", &previous, &v))?,
                    });
                }
                Ok(map(key.unwrap_or(Ty::Dyn), value.unwrap_or(Ty::Dyn)))
            }
            Expr::Struct(literal) => {
                fail(format!("message construction (`{}{{...}}`) is not supported", literal.type_name))
            }
            Expr::Comprehension(comprehension) => self.comprehension(expr.id, comprehension),
            Expr::Call(call) => self.call(expr, call),
        }
    }

    fn ident(&self, name: &str) -> Option<Ty> {
        if let Some((_, t)) = self.locals.iter().rev().find(|(local, _)| local == name) {
            return Some(t.clone());
        }
        match (name, self.scope) {
            ("claims", Scope::Claims) => Some(map(Ty::String, Ty::Dyn)),
            ("user", Scope::User) => Some(Ty::User),
            ("bool" | "int" | "uint" | "double" | "string" | "bytes" | "list" | "map" | "null_type" | "type", _) => {
                Some(Ty::Type)
            }
            _ => None,
        }
    }

    fn undeclared(&self, name: &str) -> String {
        match (name, self.scope) {
            ("user", Scope::Claims) => "undeclared reference to `user` (only userValidationRules see `user`)".into(),
            ("claims", Scope::User) => {
                "undeclared reference to `claims` (userValidationRules see `user`, not the claims)".into()
            }
            _ => format!("undeclared reference to `{name}`"),
        }
    }

    fn comprehension(&mut self, id: u64, c: &ComprehensionExpr) -> Checked {
        if c.iter_var2.is_some() {
            return Err(CheckError { id, message: "two-variable comprehensions are not supported".into() });
        }
        let range = self.check(&c.iter_range)?;
        let element = match range {
            Ty::List(t) => *t,
            Ty::Map(k, _) => *k,
            Ty::Dyn => Ty::Dyn,
            other => {
                return Err(CheckError {
                    id: c.iter_range.id,
                    message: format!("a comprehension ranges over a list or a map, not {other}"),
                });
            }
        };
        let init = self.check(&c.accu_init)?;
        self.locals.push((c.iter_var.clone(), element));
        self.locals.push((c.accu_var.clone(), init.clone()));
        let body = self.check(&c.loop_cond).and_then(|_| self.check(&c.loop_step));
        self.locals.truncate(self.locals.len() - 2);
        let step = body?;
        let accumulated = join(&init, &step).unwrap_or(Ty::Dyn);
        self.locals.push((c.accu_var.clone(), accumulated));
        let result = self.check(&c.result);
        self.locals.pop();
        result
    }

    fn call(&mut self, expr: &IdedExpr, call: &CallExpr) -> Checked {
        let fail = |message: String| Err(CheckError { id: expr.id, message });
        let name = call.func_name.as_str();
        // `ns.f(x)`: a global function of a namespace, unless `ns` is a variable.
        if let Some(target) = &call.target
            && let Expr::Ident(ns) = &target.expr
            && NAMESPACES.contains(&ns.as_str())
            && self.ident(ns).is_none()
        {
            let qualified = format!("{ns}.{name}");
            let args = self.args(&call.args)?;
            return self.global(&qualified, &args, &call.args).map_or_else(fail, Ok);
        }
        if let Some(target) = &call.target {
            let receiver = self.check(target)?;
            let args = self.args(&call.args)?;
            return self.member(&receiver, name, &args, &call.args).map_or_else(fail, Ok);
        }
        match name {
            operators::LOGICAL_AND | operators::LOGICAL_OR | operators::LOGICAL_NOT | operators::NOT_STRICTLY_FALSE => {
                for arg in &call.args {
                    let t = self.check(arg)?;
                    if !assignable(&Ty::Bool, &t) {
                        return Err(CheckError { id: arg.id, message: format!("expected bool, found {t}") });
                    }
                }
                Ok(Ty::Bool)
            }
            operators::CONDITIONAL => {
                let [condition, yes, no] = &call.args[..] else { return fail("`?:` takes three operands".into()) };
                let c = self.check(condition)?;
                if !assignable(&Ty::Bool, &c) {
                    return Err(CheckError { id: condition.id, message: format!("a condition is a bool, not {c}") });
                }
                let (a, b) = (self.check(yes)?, self.check(no)?);
                either(&a, &b).map_or_else(|| fail(format!("the branches of `?:` differ: {a} and {b}")), Ok)
            }
            operators::OPT_SELECT => {
                let [operand, field] = &call.args[..] else { return fail("`.?` takes a field".into()) };
                let t = self.check(operand)?;
                let Expr::Literal(LiteralValue::String(field)) = &field.expr else {
                    return fail("`.?` takes a field name".into());
                };
                let inner = match t {
                    Ty::Optional(inner) => *inner,
                    other => other,
                };
                Ok(optional(select_type(&inner, field.inner()).map_or_else(&fail, Ok)?))
            }
            _ => {
                let args = self.args(&call.args)?;
                self.global(name, &args, &call.args).map_or_else(fail, Ok)
            }
        }
    }

    fn args(&mut self, args: &[IdedExpr]) -> Result<Vec<Ty>, CheckError> {
        args.iter().map(|a| self.check(a)).collect()
    }

    /// A global function or operator.
    fn global(&self, name: &str, args: &[Ty], exprs: &[IdedExpr]) -> Result<Ty, String> {
        let no_overload = || {
            let shown = args.iter().map(Ty::to_string).collect::<Vec<_>>().join(", ");
            format!("no matching overload for `{}` applied to ({shown})", display_name(name))
        };
        let one = |want: &[Ty], result: Ty| {
            if args.len() == want.len() && want.iter().zip(args).all(|(p, a)| assignable(p, a)) {
                Ok(result)
            } else {
                Err(no_overload())
            }
        };
        let unary = |accepted: &[Ty], result: Ty| match args {
            [a] if matches!(a, Ty::Dyn) || accepted.contains(a) => Ok(result),
            _ => Err(no_overload()),
        };
        match name {
            operators::EQUALS | operators::NOT_EQUALS => match args {
                [a, b] if comparable(a, b) => Ok(Ty::Bool),
                _ => Err(no_overload()),
            },
            operators::LESS | operators::LESS_EQUALS | operators::GREATER | operators::GREATER_EQUALS => match args {
                [a, b] if orderable(a, b) => Ok(Ty::Bool),
                _ => Err(no_overload()),
            },
            operators::ADD => match args {
                [a, b] => add(a, b).ok_or_else(no_overload),
                _ => Err(no_overload()),
            },
            operators::SUBSTRACT | operators::MULTIPLY | operators::DIVIDE | operators::MODULO => match args {
                [a, b] => arithmetic(name, a, b).ok_or_else(no_overload),
                _ => Err(no_overload()),
            },
            operators::NEGATE => match args {
                [t @ (Ty::Int | Ty::Double | Ty::Dyn)] => Ok(t.clone()),
                _ => Err(no_overload()),
            },
            operators::INDEX => match args {
                [a, b] => index(a, b).ok_or_else(no_overload),
                _ => Err(no_overload()),
            },
            operators::OPT_INDEX => match args {
                [Ty::Optional(a), b] => Ok(optional(index(a, b).ok_or_else(no_overload)?)),
                [a, b] => Ok(optional(index(a, b).ok_or_else(no_overload)?)),
                _ => Err(no_overload()),
            },
            operators::IN => match args {
                [e, Ty::List(t)] if comparable(e, t) => Ok(Ty::Bool),
                [e, Ty::Map(k, _)] if comparable(e, k) => Ok(Ty::Bool),
                [_, Ty::Dyn] => Ok(Ty::Bool),
                _ => Err(no_overload()),
            },
            "size" => unary(&[Ty::String, Ty::Bytes], Ty::Int).or_else(|_| match args {
                [Ty::List(_) | Ty::Map(..)] => Ok(Ty::Int),
                _ => Err(no_overload()),
            }),
            "int" => unary(&[Ty::Int, Ty::Uint, Ty::Double, Ty::String], Ty::Int),
            "uint" => unary(&[Ty::Int, Ty::Uint, Ty::Double, Ty::String], Ty::Uint),
            "double" => unary(&[Ty::Int, Ty::Uint, Ty::Double, Ty::String], Ty::Double),
            "string" => {
                unary(&[Ty::Bool, Ty::Int, Ty::Uint, Ty::Double, Ty::String, Ty::Bytes, Ty::Ip, Ty::Cidr], Ty::String)
            }
            "bool" => unary(&[Ty::Bool, Ty::String], Ty::Bool),
            "bytes" => unary(&[Ty::String, Ty::Bytes], Ty::Bytes),
            "dyn" => match args {
                [_] => Ok(Ty::Dyn),
                _ => Err(no_overload()),
            },
            "type" => match args {
                [_] => Ok(Ty::Type),
                _ => Err(no_overload()),
            },
            "matches" => {
                valid_regex(exprs.get(1))?;
                one(&[Ty::String, Ty::String], Ty::Bool)
            }
            "strings.quote" => one(&[Ty::String], Ty::String),
            "sets.contains" | "sets.equivalent" | "sets.intersects" => match args {
                [a @ (Ty::List(_) | Ty::Dyn), b @ (Ty::List(_) | Ty::Dyn)] if comparable(a, b) => Ok(Ty::Bool),
                _ => Err(no_overload()),
            },
            "optional.of" | "optional.ofNonZeroValue" => match args {
                [t] => Ok(optional(t.clone())),
                _ => Err(no_overload()),
            },
            "optional.none" => one(&[], optional(Ty::Dyn)),
            "url" => one(&[Ty::String], Ty::Url),
            "isURL" | "isIP" | "isCIDR" | "ip.isCanonical" => one(&[Ty::String], Ty::Bool),
            "ip" => one(&[Ty::String], Ty::Ip),
            "cidr" => one(&[Ty::String], Ty::Cidr),
            other => Err(match unsupported(other) {
                Some(why) => format!("`{other}`: {why}"),
                None => format!("undeclared reference to function `{other}`"),
            }),
        }
    }

    /// A method on a receiver of type `receiver`.
    fn member(&self, receiver: &Ty, name: &str, args: &[Ty], exprs: &[IdedExpr]) -> Result<Ty, String> {
        if let Some(why) = unsupported(name) {
            return Err(format!("`{name}`: {why}"));
        }
        if !matches!(receiver, Ty::Dyn) {
            return match method(receiver, name, args, exprs) {
                Some(result) => result,
                None => Err(format!("no function `{name}` for a receiver of type {receiver}")),
            };
        }
        // A `dyn` receiver: any receiver type with the method will do.
        let candidates = [Ty::String, Ty::Bytes, list(Ty::Dyn), map(Ty::Dyn, Ty::Dyn), Ty::Ip, Ty::Cidr, Ty::Url];
        let mut results = Vec::new();
        let mut mismatch = None;
        for candidate in &candidates {
            match method(candidate, name, args, exprs) {
                Some(Ok(t)) => results.push(t),
                Some(Err(e)) => mismatch = Some(e),
                None => {}
            }
        }
        match (results.first(), mismatch) {
            (Some(first), _) => Ok(if results.iter().all(|t| t == first) { first.clone() } else { Ty::Dyn }),
            (None, Some(e)) => Err(e),
            (None, None) => Err(format!("undeclared reference to function `{name}`")),
        }
    }
}

fn display_name(name: &str) -> &str {
    name.trim_start_matches('@').trim_matches('_')
}

/// The field `field` of a value of type `t`.
fn select_type(t: &Ty, field: &str) -> Result<Ty, String> {
    match t {
        Ty::Dyn => Ok(Ty::Dyn),
        Ty::Map(k, v) if matches!(**k, Ty::String | Ty::Dyn) => Ok((**v).clone()),
        Ty::Optional(inner) => Ok(optional(select_type(inner, field)?)),
        Ty::User => match field {
            "username" | "uid" => Ok(Ty::String),
            "groups" => Ok(list(Ty::String)),
            "extra" => Ok(map(Ty::String, list(Ty::String))),
            other => Err(format!("kubernetes.UserInfo has no field `{other}` (username, uid, groups, extra)")),
        },
        other => Err(format!("type {other} does not support field selection (`.{field}`)")),
    }
}

fn add(a: &Ty, b: &Ty) -> Option<Ty> {
    let addable = |t: &Ty| matches!(t, Ty::Int | Ty::Uint | Ty::Double | Ty::String | Ty::Bytes | Ty::List(_));
    match (a, b) {
        (Ty::Dyn, Ty::Dyn) => Some(Ty::Dyn),
        (Ty::Dyn, t) | (t, Ty::Dyn) if addable(t) => Some(t.clone()),
        (Ty::List(x), Ty::List(y)) => Some(list(join(x, y)?)),
        _ if a == b && addable(a) => Some(a.clone()),
        _ => None,
    }
}

fn arithmetic(op: &str, a: &Ty, b: &Ty) -> Option<Ty> {
    let fits = |t: &Ty| matches!(t, Ty::Int | Ty::Uint) || (matches!(t, Ty::Double) && op != operators::MODULO);
    match (a, b) {
        (Ty::Dyn, Ty::Dyn) => Some(Ty::Dyn),
        (Ty::Dyn, t) | (t, Ty::Dyn) if fits(t) => Some(t.clone()),
        _ if a == b && fits(a) => Some(a.clone()),
        _ => None,
    }
}

fn index(container: &Ty, key: &Ty) -> Option<Ty> {
    match container {
        Ty::Dyn => Some(Ty::Dyn),
        Ty::List(t) if matches!(key, Ty::Int | Ty::Uint | Ty::Dyn) => Some((**t).clone()),
        Ty::Map(k, v) if assignable(k, key) => Some((**v).clone()),
        Ty::Optional(inner) => Some(optional(index(inner, key)?)),
        _ => None,
    }
}

/// A regex given as a literal must compile (kube-apiserver validates regex
/// literals at compile time).
fn valid_regex(pattern: Option<&IdedExpr>) -> Result<(), String> {
    if let Some(IdedExpr { expr: Expr::Literal(LiteralValue::String(pattern)), .. }) = pattern
        && let Err(e) = regex::Regex::new(pattern.inner())
    {
        return Err(format!("invalid regular expression `{}`: {e}", pattern.inner()));
    }
    Ok(())
}

/// A method of receiver type `receiver`: `None` when it has none of that
/// name, `Some(Err)` when the arguments do not fit.
fn method(receiver: &Ty, name: &str, args: &[Ty], exprs: &[IdedExpr]) -> Option<Result<Ty, String>> {
    let no_overload = || {
        let shown = args.iter().map(Ty::to_string).collect::<Vec<_>>().join(", ");
        format!("no matching overload for `{receiver}.{name}` applied to ({shown})")
    };
    // The first signature the arguments fit.
    let overloads = |signatures: &[(&[Ty], Ty)]| -> Result<Ty, String> {
        signatures
            .iter()
            .find(|(params, _)| params.len() == args.len() && params.iter().zip(args).all(|(p, a)| assignable(p, a)))
            .map(|(_, result)| result.clone())
            .ok_or_else(no_overload)
    };
    use Ty::{Bool, Int, String as Str};
    let result = match (receiver, name) {
        (Ty::String | Ty::Bytes | Ty::List(_) | Ty::Map(..), "size") => overloads(&[(&[], Int)]),
        (Ty::String, "contains" | "startsWith" | "endsWith") => overloads(&[(&[Str], Bool)]),
        (Ty::String, "matches") => valid_regex(exprs.first()).and_then(|()| overloads(&[(&[Str], Bool)])),
        (Ty::String, "find") => valid_regex(exprs.first()).and_then(|()| overloads(&[(&[Str], Str)])),
        (Ty::String, "findAll") => {
            valid_regex(exprs.first()).and_then(|()| overloads(&[(&[Str], list(Str)), (&[Str, Int], list(Str))]))
        }
        (Ty::String, "charAt") => overloads(&[(&[Int], Str)]),
        (Ty::String, "indexOf" | "lastIndexOf") => overloads(&[(&[Str], Int), (&[Str, Int], Int)]),
        (Ty::String, "lowerAscii" | "upperAscii" | "trim") => overloads(&[(&[], Str)]),
        (Ty::String, "replace") => overloads(&[(&[Str, Str], Str), (&[Str, Str, Int], Str)]),
        (Ty::String, "split") => overloads(&[(&[Str], list(Str)), (&[Str, Int], list(Str))]),
        (Ty::String, "substring") => overloads(&[(&[Int], Str), (&[Int, Int], Str)]),
        (Ty::String, "format") => overloads(&[(&[list(Ty::Dyn)], Str)]),
        (Ty::List(element), "join") => {
            if assignable(&Str, element) {
                overloads(&[(&[], Str), (&[Str], Str)])
            } else {
                Err(format!("`join` joins a list of strings, not {receiver}"))
            }
        }
        (Ty::List(_), "isSorted") => overloads(&[(&[], Bool)]),
        (Ty::List(element), "sum") => {
            if matches!(**element, Ty::Int | Ty::Uint | Ty::Double | Ty::Dyn) {
                overloads(&[(&[], (**element).clone())])
            } else {
                Err(format!("`sum` adds a list of numbers, not {receiver}"))
            }
        }
        (Ty::List(element), "min" | "max") => overloads(&[(&[], (**element).clone())]),
        (Ty::List(element), "indexOf" | "lastIndexOf") => overloads(&[(&[(**element).clone()], Int)]),
        (Ty::Optional(_), "hasValue") => overloads(&[(&[], Bool)]),
        (Ty::Optional(inner), "value") => overloads(&[(&[], (**inner).clone())]),
        (Ty::Optional(inner), "or") => match args {
            [Ty::Optional(other)] => join(inner, other).map(optional).ok_or_else(no_overload),
            [Ty::Dyn] => Ok(receiver.clone()),
            _ => Err(no_overload()),
        },
        (Ty::Optional(inner), "orValue") => match args {
            [fallback] => either(inner, fallback).ok_or_else(no_overload),
            _ => Err(no_overload()),
        },
        (Ty::Ip, "family") => overloads(&[(&[], Int)]),
        (
            Ty::Ip,
            "isUnspecified" | "isLoopback" | "isLinkLocalMulticast" | "isLinkLocalUnicast" | "isGlobalUnicast",
        ) => overloads(&[(&[], Bool)]),
        (Ty::Cidr, "containsIP") => overloads(&[(&[Ty::Ip], Bool), (&[Str], Bool)]),
        (Ty::Cidr, "containsCIDR") => overloads(&[(&[Ty::Cidr], Bool), (&[Str], Bool)]),
        (Ty::Cidr, "ip") => overloads(&[(&[], Ty::Ip)]),
        (Ty::Cidr, "masked") => overloads(&[(&[], Ty::Cidr)]),
        (Ty::Cidr, "prefixLength") => overloads(&[(&[], Int)]),
        (Ty::Url, "getScheme" | "getHost" | "getHostname" | "getPort" | "getEscapedPath") => overloads(&[(&[], Str)]),
        (Ty::Url, "getQuery") => overloads(&[(&[], map(Str, list(Str)))]),
        _ => return None,
    };
    Some(result)
}
