//! kube-apiserver's CEL libraries that cel-rust does not carry, registered as
//! overloads: lists (`isSorted`, `sum`, `min`, `max`, `indexOf`,
//! `lastIndexOf`), cel-go's sets (`sets.contains`, `sets.equivalent`,
//! `sets.intersects`), regex (`find`, `findAll`), URLs, IPs and CIDRs.

use std::cmp::Ordering;
use std::net::IpAddr;
use std::sync::Arc;

use cel::common::types::{DYN_TYPE, INT_TYPE, LIST_TYPE, STRING_TYPE, Type};
use cel::common::value::{CowVal, Val};
use cel::objects::{Key, Map};
use cel::{DeclarationError, Env, ExecutionError, Value};

use super::net::{self, Cidr, Ip};
use super::url::{self, Url};

fn ip_type() -> Type {
    Type::new_opaque_type("net.IP")
}

fn cidr_type() -> Type {
    Type::new_opaque_type("net.CIDR")
}

fn url_type() -> Type {
    Type::new_opaque_type("kubernetes.URL")
}

/// Register every overload of this module on `env`.
///
/// # Errors
///
/// A clash with an overload already declared (a bug here).
pub fn register(env: &mut Env) -> Result<(), DeclarationError> {
    // lists
    env.add_member_overload("isSorted", "list_isSorted", LIST_TYPE, vec![], is_sorted)?;
    env.add_member_overload("sum", "list_sum", LIST_TYPE, vec![], sum)?;
    env.add_member_overload("min", "list_min", LIST_TYPE, vec![], min)?;
    env.add_member_overload("max", "list_max", LIST_TYPE, vec![], max)?;
    env.add_member_overload("indexOf", "list_indexOf", LIST_TYPE, vec![DYN_TYPE], index_of)?;
    env.add_member_overload("lastIndexOf", "list_lastIndexOf", LIST_TYPE, vec![DYN_TYPE], last_index_of)?;
    // sets
    env.add_overload("sets.contains", "sets_contains", vec![LIST_TYPE, LIST_TYPE], sets_contains)?;
    env.add_overload("sets.equivalent", "sets_equivalent", vec![LIST_TYPE, LIST_TYPE], sets_equivalent)?;
    env.add_overload("sets.intersects", "sets_intersects", vec![LIST_TYPE, LIST_TYPE], sets_intersects)?;
    // regex
    env.add_member_overload("find", "string_find", STRING_TYPE, vec![STRING_TYPE], find)?;
    env.add_member_overload("findAll", "string_findAll", STRING_TYPE, vec![STRING_TYPE], find_all)?;
    env.add_member_overload("findAll", "string_findAll_n", STRING_TYPE, vec![STRING_TYPE, INT_TYPE], find_all_n)?;
    // URLs
    env.add_overload("url", "string_to_url", vec![STRING_TYPE], to_url)?;
    env.add_overload("isURL", "is_url", vec![STRING_TYPE], is_url)?;
    env.add_member_overload("getScheme", "url_getScheme", url_type(), vec![], url_scheme)?;
    env.add_member_overload("getHost", "url_getHost", url_type(), vec![], url_host)?;
    env.add_member_overload("getHostname", "url_getHostname", url_type(), vec![], url_hostname)?;
    env.add_member_overload("getPort", "url_getPort", url_type(), vec![], url_port)?;
    env.add_member_overload("getEscapedPath", "url_getEscapedPath", url_type(), vec![], url_escaped_path)?;
    env.add_member_overload("getQuery", "url_getQuery", url_type(), vec![], url_query)?;
    // IPs
    env.add_overload("ip", "string_to_ip", vec![STRING_TYPE], to_ip)?;
    env.add_overload("isIP", "is_ip", vec![STRING_TYPE], is_ip)?;
    env.add_overload("ip.isCanonical", "ip_is_canonical", vec![STRING_TYPE], ip_is_canonical)?;
    env.add_overload("string", "ip_to_string", vec![ip_type()], ip_to_string)?;
    env.add_member_overload("family", "ip_family", ip_type(), vec![], ip_family)?;
    env.add_member_overload("isUnspecified", "ip_isUnspecified", ip_type(), vec![], ip_is_unspecified)?;
    env.add_member_overload("isLoopback", "ip_isLoopback", ip_type(), vec![], ip_is_loopback)?;
    env.add_member_overload("isLinkLocalMulticast", "ip_isLinkLocalMulticast", ip_type(), vec![], ip_is_llm)?;
    env.add_member_overload("isLinkLocalUnicast", "ip_isLinkLocalUnicast", ip_type(), vec![], ip_is_llu)?;
    env.add_member_overload("isGlobalUnicast", "ip_isGlobalUnicast", ip_type(), vec![], ip_is_global)?;
    // CIDRs
    env.add_overload("cidr", "string_to_cidr", vec![STRING_TYPE], to_cidr)?;
    env.add_overload("isCIDR", "is_cidr", vec![STRING_TYPE], is_cidr)?;
    env.add_overload("string", "cidr_to_string", vec![cidr_type()], cidr_to_string)?;
    env.add_member_overload("containsIP", "cidr_containsIP_ip", cidr_type(), vec![ip_type()], contains_ip)?;
    env.add_member_overload("containsIP", "cidr_containsIP_string", cidr_type(), vec![STRING_TYPE], contains_ip)?;
    env.add_member_overload("containsCIDR", "cidr_containsCIDR_cidr", cidr_type(), vec![cidr_type()], contains_cidr)?;
    env.add_member_overload("containsCIDR", "cidr_containsCIDR_string", cidr_type(), vec![STRING_TYPE], contains_cidr)?;
    env.add_member_overload("ip", "cidr_ip", cidr_type(), vec![], cidr_ip)?;
    env.add_member_overload("masked", "cidr_masked", cidr_type(), vec![], cidr_masked)?;
    env.add_member_overload("prefixLength", "cidr_prefixLength", cidr_type(), vec![], cidr_prefix_length)?;
    Ok(())
}

/// An overload body over [`Value`]s: `$args` are the call's arguments
/// (receiver first) converted, `$body` yields the result or an error.
macro_rules! overload {
    ($name:ident, $function:literal, |$args:ident| $body:expr) => {
        fn $name<'b, 'v>(raw: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
            fn body($args: &[Value]) -> Result<Value, String> {
                $body
            }
            let args: Vec<Value> = raw.iter().map(|a| Value::try_from(&**a)).collect::<Result<_, _>>()?;
            let value = body(&args).map_err(|message| ExecutionError::function_error($function, message))?;
            let boxed: Box<dyn Val> = value.try_into()?;
            Ok(CowVal::Owned(boxed))
        }
    };
}

fn items(value: &Value) -> Result<&[Value], String> {
    match value {
        Value::List(items) => Ok(items),
        other => Err(format!("expected a list, got {other:?}")),
    }
}

fn text(value: &Value) -> Result<&str, String> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(format!("expected a string, got {other:?}")),
    }
}

/// CEL equality: numbers compare across types, lists and maps by content.
pub fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::List(x), Value::List(y)) => x.len() == y.len() && x.iter().zip(y.iter()).all(|(a, b)| equal(a, b)),
        (Value::Map(x), Value::Map(y)) => {
            x.map.len() == y.map.len() && x.map.iter().all(|(k, v)| y.map.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
    }
}

/// A number as an exact integer or a double, for cross-type comparisons.
#[derive(PartialEq, PartialOrd)]
enum Number {
    Whole(i128),
    Real(f64),
}

fn number(value: &Value) -> Option<Number> {
    match value {
        Value::Int(i) => Some(Number::Whole(i128::from(*i))),
        Value::UInt(u) => Some(Number::Whole(i128::from(*u))),
        Value::Float(f) => Some(Number::Real(*f)),
        _ => None,
    }
}

fn compare(a: &Value, b: &Value) -> Result<Ordering, String> {
    let ordering = match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Bytes(x), Value::Bytes(y)) => Some(x.cmp(y)),
        _ => match (number(a), number(b)) {
            (Some(Number::Whole(x)), Some(Number::Whole(y))) => Some(x.cmp(&y)),
            (Some(x), Some(y)) => {
                let real = |n: Number| match n {
                    Number::Whole(i) => i as f64,
                    Number::Real(f) => f,
                };
                real(x).partial_cmp(&real(y))
            }
            _ => None,
        },
    };
    ordering.ok_or_else(|| format!("no such overload: {a:?} and {b:?} are not comparable"))
}

overload!(is_sorted, "isSorted", |args| {
    items(&args[0]).and_then(|list| {
        for pair in list.windows(2) {
            if compare(&pair[0], &pair[1])? == Ordering::Greater {
                return Ok(Value::Bool(false));
            }
        }
        Ok(Value::Bool(true))
    })
});

overload!(sum, "sum", |args| {
    items(&args[0]).and_then(|list| match list.first() {
        None => Ok(Value::Int(0)),
        Some(Value::Int(_)) => list
            .iter()
            .try_fold(0i64, |acc, v| match v {
                Value::Int(i) => acc.checked_add(*i).ok_or_else(|| "integer overflow".to_string()),
                other => Err(format!("sum of a list of ints met {other:?}")),
            })
            .map(Value::Int),
        Some(Value::UInt(_)) => list
            .iter()
            .try_fold(0u64, |acc, v| match v {
                Value::UInt(u) => acc.checked_add(*u).ok_or_else(|| "unsigned integer overflow".to_string()),
                other => Err(format!("sum of a list of uints met {other:?}")),
            })
            .map(Value::UInt),
        Some(Value::Float(_)) => list
            .iter()
            .try_fold(0f64, |acc, v| match v {
                Value::Float(f) => Ok(acc + f),
                other => Err(format!("sum of a list of doubles met {other:?}")),
            })
            .map(Value::Float),
        Some(other) => Err(format!("sum of a list of {other:?}")),
    })
});

fn extreme(list: &[Value], keep: Ordering, name: &str) -> Result<Value, String> {
    let mut best = list.first().ok_or_else(|| format!("{name} called on empty list"))?;
    for item in &list[1..] {
        if compare(item, best)? == keep {
            best = item;
        }
    }
    Ok(best.clone())
}

overload!(min, "min", |args| items(&args[0]).and_then(|l| extreme(l, Ordering::Less, "min")));
overload!(max, "max", |args| items(&args[0]).and_then(|l| extreme(l, Ordering::Greater, "max")));

overload!(index_of, "indexOf", |args| {
    items(&args[0]).map(|l| Value::Int(l.iter().position(|v| equal(v, &args[1])).map_or(-1, |i| i as i64)))
});

overload!(last_index_of, "lastIndexOf", |args| {
    items(&args[0]).map(|l| Value::Int(l.iter().rposition(|v| equal(v, &args[1])).map_or(-1, |i| i as i64)))
});

fn contains_all(haystack: &[Value], needles: &[Value]) -> bool {
    needles.iter().all(|n| haystack.iter().any(|h| equal(h, n)))
}

overload!(sets_contains, "sets.contains", |args| Ok(Value::Bool(contains_all(items(&args[0])?, items(&args[1])?))));

overload!(sets_equivalent, "sets.equivalent", |args| {
    let (a, b) = (items(&args[0])?, items(&args[1])?);
    Ok(Value::Bool(contains_all(a, b) && contains_all(b, a)))
});

overload!(sets_intersects, "sets.intersects", |args| {
    let (a, b) = (items(&args[0])?, items(&args[1])?);
    Ok(Value::Bool(a.iter().any(|x| b.iter().any(|y| equal(x, y)))))
});

fn compiled(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(pattern).map_err(|e| format!("invalid regular expression: {e}"))
}

fn strings(found: impl Iterator<Item = String>) -> Value {
    Value::List(Arc::new(found.map(|s| Value::String(Arc::new(s))).collect()))
}

overload!(find, "find", |args| {
    let re = compiled(text(&args[1])?)?;
    Ok(Value::from(re.find(text(&args[0])?).map_or("", |m| m.as_str())))
});

overload!(find_all, "findAll", |args| {
    let re = compiled(text(&args[1])?)?;
    Ok(strings(re.find_iter(text(&args[0])?).map(|m| m.as_str().to_string())))
});

overload!(find_all_n, "findAll", |args| {
    let re = compiled(text(&args[1])?)?;
    let limit = match &args[2] {
        Value::Int(n) if *n < 0 => usize::MAX,
        Value::Int(n) => usize::try_from(*n).unwrap_or(usize::MAX),
        _ => usize::MAX,
    };
    Ok(strings(re.find_iter(text(&args[0])?).take(limit).map(|m| m.as_str().to_string())))
});

fn opaque<T: 'static>(value: &Value) -> Result<&T, String> {
    match value {
        Value::Opaque(o) => {
            o.downcast_ref::<T>().ok_or_else(|| format!("unexpected value of type {}", o.runtime_type_name()))
        }
        other => Err(format!("unexpected value {other:?}")),
    }
}

fn url_of(value: &Value) -> Result<&Url, String> {
    opaque::<Url>(value)
}

overload!(to_url, "url", |args| Ok(Value::Opaque(Arc::new(url::parse(text(&args[0])?)?))));
overload!(is_url, "isURL", |args| Ok(Value::Bool(url::parse(text(&args[0])?).is_ok())));
overload!(url_scheme, "getScheme", |args| Ok(Value::from(url_of(&args[0])?.scheme())));
overload!(url_host, "getHost", |args| Ok(Value::from(url_of(&args[0])?.host())));
overload!(url_hostname, "getHostname", |args| Ok(Value::from(url_of(&args[0])?.hostname())));
overload!(url_port, "getPort", |args| Ok(Value::from(url_of(&args[0])?.port())));
overload!(url_escaped_path, "getEscapedPath", |args| Ok(Value::from(url_of(&args[0])?.escaped_path().as_str())));
overload!(url_query, "getQuery", |args| {
    let query = url_of(&args[0])?.query();
    Ok(Value::Map(Map {
        map: Arc::new(query.into_iter().map(|(k, v)| (Key::String(Arc::new(k)), strings(v.into_iter()))).collect()),
    }))
});

fn ip_of(value: &Value) -> Result<IpAddr, String> {
    opaque::<Ip>(value).map(|ip| ip.0)
}

fn cidr_of(value: &Value) -> Result<Cidr, String> {
    match value {
        Value::String(s) => net::parse_cidr(s),
        other => opaque::<Cidr>(other).cloned(),
    }
}

overload!(to_ip, "ip", |args| Ok(Value::Opaque(Arc::new(Ip(net::parse_ip(text(&args[0])?)?)))));
overload!(is_ip, "isIP", |args| Ok(Value::Bool(net::parse_ip(text(&args[0])?).is_ok())));
overload!(ip_is_canonical, "ip.isCanonical", |args| {
    let written = text(&args[0])?;
    Ok(Value::Bool(net::ip_string(&net::parse_ip(written)?) == written))
});
overload!(ip_to_string, "string", |args| Ok(Value::from(net::ip_string(&ip_of(&args[0])?).as_str())));
overload!(ip_family, "family", |args| Ok(Value::Int(net::family(&ip_of(&args[0])?))));
overload!(ip_is_unspecified, "isUnspecified", |args| Ok(Value::Bool(net::is_unspecified(&ip_of(&args[0])?))));
overload!(ip_is_loopback, "isLoopback", |args| Ok(Value::Bool(net::is_loopback(&ip_of(&args[0])?))));
overload!(ip_is_llm, "isLinkLocalMulticast", |args| Ok(Value::Bool(net::is_link_local_multicast(&ip_of(&args[0])?))));
overload!(ip_is_llu, "isLinkLocalUnicast", |args| Ok(Value::Bool(net::is_link_local_unicast(&ip_of(&args[0])?))));
overload!(ip_is_global, "isGlobalUnicast", |args| Ok(Value::Bool(net::is_global_unicast(&ip_of(&args[0])?))));

overload!(to_cidr, "cidr", |args| Ok(Value::Opaque(Arc::new(net::parse_cidr(text(&args[0])?)?))));
overload!(is_cidr, "isCIDR", |args| Ok(Value::Bool(net::parse_cidr(text(&args[0])?).is_ok())));
overload!(cidr_to_string, "string", |args| Ok(Value::from(net::cidr_string(&cidr_of(&args[0])?).as_str())));
overload!(contains_ip, "containsIP", |args| {
    let prefix = cidr_of(&args[0])?;
    let addr = match &args[1] {
        Value::String(s) => net::parse_ip(s)?,
        other => ip_of(other)?,
    };
    Ok(Value::Bool(prefix.contains_ip(&addr)))
});
overload!(contains_cidr, "containsCIDR", |args| {
    Ok(Value::Bool(cidr_of(&args[0])?.contains_cidr(&cidr_of(&args[1])?)))
});
overload!(cidr_ip, "ip", |args| Ok(Value::Opaque(Arc::new(Ip(cidr_of(&args[0])?.addr)))));
overload!(cidr_masked, "masked", |args| Ok(Value::Opaque(Arc::new(cidr_of(&args[0])?.masked()))));
overload!(cidr_prefix_length, "prefixLength", |args| Ok(Value::Int(i64::from(cidr_of(&args[0])?.bits))));
