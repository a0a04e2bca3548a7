//! kube-apiserver's cost limit: an evaluation stops past 1,000,000 cost
//! units. Here an expression costs one unit per node, and each comprehension
//! iteration the size of its body, counted as it runs.
//!
//! Iterations are counted by a variable, `@tick:<units>`, put where the
//! comprehension evaluates it once per iteration: resolving it spends the
//! units and reads `true`, or, past the limit, `false`, which ends the loop
//! (a `@tick ? x : false` guard). A variable is the cheapest thing cel-rust
//! evaluates (a function call allocates its arguments), and it keeps the
//! loop steps in the shapes cel-rust evaluates fastest: `map` and `filter`
//! append to one list in place, `all` and `exists` absorb an element's error
//! as cel-go does. CEL source cannot name a variable with `@` or `:`.

use std::cell::Cell;

use cel::common::ast::{CallExpr, ComprehensionExpr, Expr, IdedExpr, LiteralValue, operators};
use cel::common::types::CelBool;
use cel::common::value::CowVal;

use super::nodes;

/// kube-apiserver's cost limit per evaluation (`celconfig.PerCallLimit`).
pub const COST_LIMIT: u64 = 1_000_000;

/// The prefix of the variables that count iterations; the units follow.
const TICK: &str = "@tick:";

thread_local! {
    /// Cost units left in the running evaluation.
    static BUDGET: Cell<u64> = const { Cell::new(0) };
    /// Whether the running evaluation ran out: its result, whatever an
    /// `||` made of the error or of the loops it cut short, does not count.
    static EXCEEDED: Cell<bool> = const { Cell::new(false) };
}

static TRUE: CelBool = CelBool::TRUE;
static FALSE: CelBool = CelBool::FALSE;

/// Start an evaluation that costs `base` before any iteration.
pub fn start(base: u64) {
    BUDGET.with(|budget| budget.set(COST_LIMIT.saturating_sub(base)));
    EXCEEDED.with(|e| e.set(false));
}

/// Whether the evaluation since [`start`] went past the limit.
pub fn exceeded() -> bool {
    EXCEEDED.with(Cell::get)
}

/// The error of an evaluation past the limit.
pub fn exceeded_message() -> String {
    format!("the expression exceeded its cost limit of {COST_LIMIT}")
}

/// The value of `variable` when it counts an iteration: whether the
/// iteration is within the budget, which it is charged to.
pub fn tick(variable: &str) -> Option<CowVal<'static, 'static>> {
    let units: u64 = variable.strip_prefix(TICK)?.parse().ok()?;
    Some(CowVal::Borrowed(if charge(units) { &TRUE } else { &FALSE }))
}

/// Spend `units` of the budget: whether they were left.
pub fn charge(units: u64) -> bool {
    BUDGET.with(|budget| match budget.get().checked_sub(units) {
        Some(left) => {
            budget.set(left);
            true
        }
        None => {
            budget.set(0);
            EXCEEDED.with(|e| e.set(true));
            false
        }
    })
}

/// The units one iteration of `c` costs: the size of its body as written.
pub fn iteration(c: &ComprehensionExpr) -> u64 {
    nodes(&c.loop_step) + nodes(&c.loop_cond)
}

fn fresh(next_id: &mut u64, expr: Expr) -> IdedExpr {
    *next_id += 1;
    IdedExpr { id: *next_id, expr }
}

/// `@tick:<units> ? then : false`.
fn guarded(next_id: &mut u64, units: u64, then: IdedExpr) -> IdedExpr {
    let tick = fresh(next_id, Expr::Ident(format!("{TICK}{units}")));
    let otherwise = fresh(next_id, Expr::Literal(LiteralValue::Boolean(false.into())));
    fresh(
        next_id,
        Expr::Call(CallExpr {
            func_name: operators::CONDITIONAL.into(),
            target: None,
            args: vec![tick, then, otherwise],
        }),
    )
}

pub fn is_ident(expr: &IdedExpr, name: &str) -> bool {
    matches!(&expr.expr, Expr::Ident(n) if n == name)
}

pub fn is_call<'e>(expr: &'e IdedExpr, name: &str) -> Option<&'e [IdedExpr]> {
    match &expr.expr {
        Expr::Call(CallExpr { func_name, target: None, args }) if func_name == name => Some(args),
        _ => None,
    }
}

/// Put a tick in every comprehension of `expr`. New nodes take ids from `next_id`.
pub fn ticks(expr: &mut IdedExpr, next_id: &mut u64) {
    let Expr::Comprehension(c) = &mut expr.expr else {
        super::children_mut(expr).into_iter().for_each(|child| ticks(child, next_id));
        return;
    };
    // The body as written, before its own comprehensions get their ticks.
    let units = iteration(c);
    for part in [&mut c.iter_range, &mut c.accu_init, &mut c.loop_cond, &mut c.loop_step, &mut c.result] {
        ticks(part, next_id);
    }
    if let Some(slot) = appended(c) {
        let item = std::mem::take(slot);
        *slot = guarded(next_id, units, item);
        return;
    }
    let cond = std::mem::take(&mut c.loop_cond);
    let cond = if exists_shape(c, &cond) {
        // `@not_strictly_false(!@result)`, where `@result` is always a bool:
        // `@result ? false : true` says the same without the error value
        // cel-rust builds for every `!` it evaluates.
        let accu = fresh(next_id, Expr::Ident(c.accu_var.clone()));
        let no = fresh(next_id, Expr::Literal(LiteralValue::Boolean(false.into())));
        let yes = fresh(next_id, Expr::Literal(LiteralValue::Boolean(true.into())));
        fresh(
            next_id,
            Expr::Call(CallExpr { func_name: operators::CONDITIONAL.into(), target: None, args: vec![accu, no, yes] }),
        )
    } else {
        cond
    };
    c.loop_cond = guarded(next_id, units, cond);
}

/// In a `map` or `filter` (cel-rust's in-place shape: a literal loop
/// condition, `@result + [x]` or `g ? @result + [x] : @result`, `@result` as
/// the result), what is evaluated once per iteration before anything else
/// of the step: `g`, or else `x`.
fn appended(c: &mut ComprehensionExpr) -> Option<&mut IdedExpr> {
    let accu = c.accu_var.as_str();
    if !is_ident(&c.result, accu) || !matches!(c.loop_cond.expr, Expr::Literal(_)) {
        return None;
    }
    let appends = |step: &IdedExpr| {
        is_call(step, operators::ADD).is_some_and(|args| {
            matches!(args, [lhs, IdedExpr { expr: Expr::List(list), .. }]
                if is_ident(lhs, accu) && list.elements.len() == 1)
        })
    };
    let guarded = is_call(&c.loop_step, operators::CONDITIONAL)
        .is_some_and(|args| matches!(args, [_, step, otherwise] if appends(step) && is_ident(otherwise, accu)));
    let plain = appends(&c.loop_step);
    let Expr::Call(step) = &mut c.loop_step.expr else { return None };
    if guarded {
        return step.args.first_mut();
    }
    if !plain {
        return None;
    }
    match step.args.get_mut(1).map(|list| &mut list.expr) {
        Some(Expr::List(list)) => list.elements.first_mut(),
        _ => None,
    }
}

/// Whether `cond` is the loop condition of an `exists` (`@result || x`
/// from a literal `@result`), `@not_strictly_false(!@result)`.
pub fn exists_shape(c: &ComprehensionExpr, cond: &IdedExpr) -> bool {
    let accu = c.accu_var.as_str();
    let negated = is_call(cond, operators::NOT_STRICTLY_FALSE)
        .and_then(|args| match args {
            [arg] => is_call(arg, operators::LOGICAL_NOT),
            _ => None,
        })
        .is_some_and(|args| matches!(args, [a] if is_ident(a, accu)));
    let folds =
        is_call(&c.loop_step, operators::LOGICAL_OR).is_some_and(|args| matches!(args, [a, _] if is_ident(a, accu)));
    negated && folds && matches!(c.accu_init.expr, Expr::Literal(LiteralValue::Boolean(_)))
}
