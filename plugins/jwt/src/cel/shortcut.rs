//! Comprehension shapes evaluated by one function instead of cel-rust's
//! loop, which allocates the loop variables' names and values on every
//! iteration: `l.exists(v, v == c)` and `l.exists(v, c == v)` for a literal
//! `c` (kube-apiserver's "has this scope / group / audience").
//!
//! The function does what the loop does, in the same order: the same error
//! for a range that cannot be iterated, the same equality, the same tick per
//! element visited (the element that ends the loop included), and it stops
//! where the loop stops.

use cel::common::ast::{CallExpr, ComprehensionExpr, Expr, IdedExpr, LiteralValue, operators};
use cel::common::types::{BOOL_TYPE, CelBool, CelInt, DYN_TYPE, INT_TYPE};
use cel::common::value::CowVal;
use cel::{DeclarationError, Env, ExecutionError};

use super::children_mut;
use super::cost::{self, is_call, is_ident};

/// The function an `exists` over a literal is evaluated by: `(range,
/// literal, units, literal first)`. CEL source cannot name it.
const EXISTS_EQUAL: &str = "@exists_equal";

/// Declare the functions of the shortcuts on `env`.
///
/// # Errors
///
/// A clash with an overload already declared (a bug here).
pub fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_overload(EXISTS_EQUAL, EXISTS_EQUAL, vec![DYN_TYPE, DYN_TYPE, INT_TYPE, BOOL_TYPE], exists_equal)
}

/// Replace every comprehension of a shortcut's shape in `expr`; before
/// [`cost::ticks`], which would change the shapes. New nodes take ids from `next_id`.
pub fn apply(expr: &mut IdedExpr, next_id: &mut u64) {
    children_mut(expr).into_iter().for_each(|child| apply(child, next_id));
    let Expr::Comprehension(c) = &mut expr.expr else { return };
    let Some((literal, literal_first)) = exists_equal_shape(c) else { return };
    let units = cost::iteration(c);
    let range = std::mem::take(&mut c.iter_range);
    let mut fresh = |e: LiteralValue| {
        *next_id += 1;
        IdedExpr { id: *next_id, expr: Expr::Literal(e) }
    };
    let args = vec![
        range,
        fresh(literal),
        fresh(LiteralValue::Int(i64::try_from(units).unwrap_or(i64::MAX).into())),
        fresh(LiteralValue::Boolean(literal_first.into())),
    ];
    expr.expr = Expr::Call(CallExpr { func_name: EXISTS_EQUAL.into(), target: None, args });
}

/// `range.exists(v, v == c)` as the `exists` macro expands it: the literal
/// `c`, and whether it is on the left of `==`.
fn exists_equal_shape(c: &ComprehensionExpr) -> Option<(LiteralValue, bool)> {
    let accu = c.accu_var.as_str();
    if c.iter_var2.is_some()
        || !matches!(c.accu_init.expr, Expr::Literal(LiteralValue::Boolean(ref b)) if !*b.inner())
        || !is_ident(&c.result, accu)
        || !cost::exists_shape(c, &c.loop_cond)
    {
        return None;
    }
    let [first, test] = is_call(&c.loop_step, operators::LOGICAL_OR)? else { return None };
    let [lhs, rhs] = is_call(test, operators::EQUALS)? else { return None };
    if !is_ident(first, accu) {
        return None;
    }
    match (&lhs.expr, &rhs.expr) {
        (Expr::Ident(v), Expr::Literal(l)) if *v == c.iter_var => Some((l.clone(), false)),
        (Expr::Literal(l), Expr::Ident(v)) if *v == c.iter_var => Some((l.clone(), true)),
        _ => None,
    }
}

/// `@exists_equal(range, literal, units, literal_first)`.
fn exists_equal<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [range, literal, units, literal_first] = &args[..] else {
        return Err(ExecutionError::missing_argument_or_target());
    };
    let units = units.downcast_ref::<CelInt>().map_or(1, |n| n.inner().unsigned_abs());
    let literal_first = literal_first.downcast_ref::<CelBool>().is_some_and(|b| *b.inner());
    let iterable = range.as_iterable().ok_or_else(|| ExecutionError::UnexpectedType {
        got: range.get_type().name().to_owned(),
        want: "iterable".to_owned(),
    })?;
    let mut items = iterable.iter();
    let mut found = false;
    // The loop: the condition (a tick, then `!found`) before each element's step.
    while let Some(item) = items.next() {
        if !cost::charge(units) || found {
            break;
        }
        found = if literal_first { literal.equals(item) } else { item.equals(literal.as_ref()) };
    }
    Ok(CowVal::owned(CelBool::from(found)))
}
