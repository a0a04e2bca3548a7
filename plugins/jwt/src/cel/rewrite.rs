//! Rewrites of a checked expression into shapes cel-rust evaluates with less
//! work and the same result.
//!
//! `claims.x` (and `user.x`) becomes `claims["x"]`: cel-rust resolves a
//! select on an identifier as a qualified name, joining its segments into a
//! new string and looking each prefix up, on every evaluation; an index
//! looks the variable up once. The variable is a map, where both look the
//! key up alike and fail alike (`no such key: x`). Where a comprehension
//! names its own variable so (`l.exists(claims, claims.x)`), the select is
//! left as written: that variable may be anything.

use cel::common::ast::{CallExpr, Expr, IdedExpr, LiteralValue, operators};

use super::children_mut;

/// Index `variable` (the map the expression is evaluated with) where it is
/// selected from. New nodes take ids from `next_id`.
pub fn index_selects(expr: &mut IdedExpr, variable: &str, next_id: &mut u64) {
    match &mut expr.expr {
        Expr::Select(select)
            if !select.test && matches!(&select.operand.expr, Expr::Ident(name) if name == variable) =>
        {
            let operand = std::mem::take(select.operand.as_mut());
            let field = std::mem::take(&mut select.field);
            *next_id += 1;
            let key = IdedExpr { id: *next_id, expr: Expr::Literal(LiteralValue::String(field.into())) };
            expr.expr =
                Expr::Call(CallExpr { func_name: operators::INDEX.into(), target: None, args: vec![operand, key] });
        }
        Expr::Comprehension(c) => {
            // The range and the initial value are evaluated outside the loop's scope.
            index_selects(&mut c.iter_range, variable, next_id);
            index_selects(&mut c.accu_init, variable, next_id);
            let shadowed = c.iter_var == variable || c.accu_var == variable || c.iter_var2.as_deref() == Some(variable);
            if !shadowed {
                for part in [&mut c.loop_cond, &mut c.loop_step, &mut c.result] {
                    index_selects(part, variable, next_id);
                }
            }
        }
        _ => children_mut(expr).into_iter().for_each(|child| index_selects(child, variable, next_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(source: &str) -> IdedExpr {
        let mut expr = cel::parser::Parser::default().enable_optional_syntax(true).parse(source).unwrap();
        let mut next_id = 1000;
        index_selects(&mut expr, "claims", &mut next_id);
        expr
    }

    fn parsed(source: &str) -> IdedExpr {
        cel::parser::Parser::default().enable_optional_syntax(true).parse(source).unwrap()
    }

    /// The same tree, ids aside.
    fn same(a: &IdedExpr, b: &IdedExpr) -> bool {
        format!("{:?}", strip(a.clone())) == format!("{:?}", strip(b.clone()))
    }

    fn strip(mut e: IdedExpr) -> Expr {
        fn walk(e: &mut IdedExpr) {
            e.id = 0;
            for child in children_mut(e) {
                walk(child);
            }
        }
        walk(&mut e);
        e.expr
    }

    #[test]
    fn selects_on_the_variable_become_indexes() {
        assert!(same(&rewritten("claims.a.b + claims.c"), &parsed("claims['a'].b + claims['c']")));
        assert!(same(&rewritten("has(claims.a) && has(claims.a.b)"), &parsed("has(claims.a) && has(claims['a'].b)")));
        assert!(same(&rewritten("other.a"), &parsed("other.a")));
        assert!(same(&rewritten("claims.l.map(x, claims.y)"), &parsed("claims['l'].map(x, claims['y'])")));
        assert!(same(&rewritten("claims.l.map(claims, claims.y)"), &parsed("claims['l'].map(claims, claims.y)")));
    }
}
