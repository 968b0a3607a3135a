//! A bound on the signature verifications one request may cost.
//!
//! Evidence and endorsements decide how many certificates a chain builder
//! tries and how many candidate keys a verifier checks; without a bound a
//! request can buy seconds of CPU with cheap bytes. As rustls-webpki does for
//! path building, a family that takes a pool of untrusted certificates runs
//! its verification inside [`scoped`]: every signature verification
//! ([`crate::x509::verify_signature`] and the family's own) first calls
//! [`spend`], which fails once the budget is used up. Outside a scope
//! nothing is counted.

use std::cell::Cell;

thread_local! {
    /// Verifications left in the innermost scope on this thread (`None`: no scope).
    static LEFT: Cell<Option<usize>> = const { Cell::new(None) };
    /// Whether a verification was refused in the current scope.
    static EXHAUSTED: Cell<bool> = const { Cell::new(false) };
}

/// The message a refused verification fails with.
pub const EXHAUSTED_MESSAGE: &str = "signature budget of this request exhausted";

/// Run `f` with at most `limit` signature verifications (fewer when an
/// enclosing scope has fewer left). Returns `f`'s result and whether a
/// verification was refused because the budget ran out; what `f` spent is
/// also charged to the enclosing scope.
pub fn scoped<T>(limit: usize, f: impl FnOnce() -> T) -> (T, bool) {
    /// Restores the enclosing scope even if `f` unwinds.
    struct Restore {
        outer: Option<usize>,
        outer_exhausted: bool,
        start: usize,
        bounded_by_outer: bool,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            let spent = self.start - LEFT.with(Cell::get).unwrap_or(self.start).min(self.start);
            // A refusal for want of the outer scope's remainder is the outer
            // scope's refusal too.
            let inner = EXHAUSTED.with(Cell::get) && self.bounded_by_outer;
            LEFT.with(|c| c.set(self.outer.map(|o| o.saturating_sub(spent))));
            EXHAUSTED.with(|e| e.set(self.outer_exhausted || inner));
        }
    }
    let outer = LEFT.with(Cell::get);
    let start = outer.map_or(limit, |o| o.min(limit));
    let bounded_by_outer = outer.is_some_and(|o| o <= limit);
    let _restore = Restore { outer, outer_exhausted: EXHAUSTED.with(Cell::get), start, bounded_by_outer };
    LEFT.with(|c| c.set(Some(start)));
    EXHAUSTED.with(|e| e.set(false));
    let out = f();
    (out, EXHAUSTED.with(Cell::get))
}

/// Charge one signature verification to the current scope, if any; an
/// error once its budget is used up.
pub fn spend() -> Result<(), String> {
    LEFT.with(|c| match c.get() {
        None => Ok(()),
        Some(0) => {
            EXHAUSTED.with(|e| e.set(true));
            Err(EXHAUSTED_MESSAGE.to_string())
        }
        Some(n) => {
            c.set(Some(n - 1));
            Ok(())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_inside_a_scope_and_refuses_past_the_limit() {
        assert!((0..10).all(|_| spend().is_ok()), "no scope: nothing counted");
        let (spent, exhausted) = scoped(3, || (0..5).filter(|_| spend().is_ok()).count());
        assert_eq!((spent, exhausted), (3, true));
        let (_, exhausted) = scoped(3, spend);
        assert!(!exhausted);
        assert!(spend().is_ok(), "the scope is closed");
    }

    #[test]
    fn an_inner_scope_never_widens_the_outer_one_and_is_charged_to_it() {
        let (((inner_spent, inner_exhausted), refused_after), outer_exhausted) = scoped(4, || {
            spend().unwrap();
            let inner = scoped(100, || (0..10).filter(|_| spend().is_ok()).count());
            (inner, spend().is_err())
        });
        assert_eq!((inner_spent, inner_exhausted), (3, true));
        assert!(refused_after && outer_exhausted, "the outer budget is used up by the inner scope");
    }
}
