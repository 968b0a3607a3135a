//! What one policy may cost: time, memory and threads.
//!
//! A policy is code the service runs, written by an operator, a tenant or (for
//! the dry-run endpoint) a reader. regorus bounds the *time* of evaluation
//! cooperatively (it checks a clock between steps), but a single builtin call
//! is one step: `numbers.range(0, 1e15)` asks the allocator for 24 PB at
//! once and Rust aborts the whole process. So:
//!
//! * the builtins whose result can be far larger than their arguments are
//!   shadowed by guarded versions ([`install`]) that refuse, before any
//!   allocation, a result larger than [`MAX_VALUE_BYTES`] (or a range longer
//!   than [`MAX_RANGE_LEN`], a `sprintf` width over [`MAX_FORMAT_WIDTH`], a
//!   shift over [`MAX_SHIFT_BITS`], a number with an exponent over
//!   [`MAX_EXPONENT`]), then call regorus's own builtin, so the semantics are
//!   regorus's exactly;
//! * the clock is checked every few steps, so a chain of growing steps
//!   (bigint squaring, nested comprehensions) stops within the time limit;
//! * compilation and every evaluation run on their own thread with a large
//!   stack ([`run`]): a step the clock cannot interrupt (comparing two huge
//!   shared structures) still answers the caller at the deadline with
//!   [`PolicyError::Evaluation`], and at most [`MAX_OVERRUNS`] such threads
//!   may keep running before further evaluations are refused outright;
//! * numbers with enormous exponents are refused in the policy text itself
//!   (regorus would expand `1e999999999` into a billion-digit integer).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use regorus::unstable::{Expr, Ref, Source, Span, BUILTINS};
use regorus::Value;

use crate::policy::{PolicyError, EVAL_TIME_LIMIT};

/// Largest string, array, set or object (flattened, in bytes) a guarded
/// builtin may produce or be given. Attestation claims are kilobytes.
pub const MAX_VALUE_BYTES: usize = 4 << 20;
/// Most elements `numbers.range` / `numbers.range_step` may produce.
pub const MAX_RANGE_LEN: f64 = 100_000.0;
/// Largest `sprintf` width or precision (`%05d`, `%.3f`).
pub const MAX_FORMAT_WIDTH: u64 = 10_000;
/// Largest `bits.lsh` shift.
pub const MAX_SHIFT_BITS: f64 = 4096.0;
/// Largest decimal exponent of a number written in the policy or parsed by
/// `to_number` / `units.parse*` / `json.unmarshal`.
pub const MAX_EXPONENT: u32 = 400;
/// Evaluations past their deadline that may still be running (each holds a
/// thread until its step ends) before new ones are refused.
pub const MAX_OVERRUNS: usize = 4;
/// Stack of an evaluation thread: deep (but bounded) nesting in policies and
/// values must not overflow it.
const EVAL_STACK: usize = 64 << 20;
/// How long past the time limit the caller waits before giving up on a step
/// the clock could not interrupt.
const GRACE: Duration = Duration::from_millis(500);

/// Evaluation threads now past their deadline and still running.
static OVERRUNS: AtomicUsize = AtomicUsize::new(0);

/// Run `work` (a compilation or an evaluation) on its own thread and wait at
/// most the evaluation time limit plus a grace period. A panic in regorus,
/// an overrun, or too many earlier overruns still running, are each an
/// [`PolicyError::Evaluation`] naming the cause: the caller never blocks
/// longer than the deadline and the process never goes down with it.
pub(crate) fn run<T: Send + 'static>(what: &str, work: impl FnOnce() -> Result<T, PolicyError> + Send + 'static) -> Result<T, PolicyError> {
    let running = OVERRUNS.load(Ordering::Relaxed);
    if running >= MAX_OVERRUNS {
        return Err(PolicyError::Evaluation(format!(
            "{running} earlier policy evaluations overran the {}-second limit and are still running; \
             refusing to start another until they end (find and fix the policy that loops)",
            EVAL_TIME_LIMIT.as_secs_f32()
        )));
    }
    let (tx, rx) = mpsc::sync_channel(1);
    let spawned = dispatch(Box::new(move || {
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
        if tx.send(out).is_err() {
            // The caller gave up at the deadline: this thread was counted as an overrun.
            OVERRUNS.fetch_sub(1, Ordering::Relaxed);
        }
    }));
    if let Err(e) = spawned {
        return Err(PolicyError::Evaluation(format!("cannot start a policy evaluation thread: {e}")));
    }
    match rx.recv_timeout(EVAL_TIME_LIMIT + GRACE) {
        Ok(Ok(result)) => result,
        Ok(Err(_panic)) => Err(PolicyError::Evaluation(format!(
            "{what} failed inside the Rego engine (it panicked); the policy uses a construct the engine cannot handle"
        ))),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            OVERRUNS.fetch_add(1, Ordering::Relaxed);
            // The thread may have finished between the timeout and the count.
            if let Ok(Ok(result)) = rx.try_recv() {
                OVERRUNS.fetch_sub(1, Ordering::Relaxed);
                return result;
            }
            Err(PolicyError::Evaluation(format!(
                "{what} exceeded the {}-second time limit in a single step; simplify the policy",
                EVAL_TIME_LIMIT.as_secs_f32()
            )))
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(PolicyError::Evaluation(format!("{what} ended without a result"))),
    }
}

/// One compilation or evaluation, run on an evaluation thread.
type Job = Box<dyn FnOnce() + Send>;

/// Evaluation threads (each with [`EVAL_STACK`]) waiting for their next job:
/// reused, so an appraisal does not pay for creating a thread. A thread whose
/// job overran is reused only once its job has ended.
static IDLE: std::sync::Mutex<Vec<mpsc::Sender<Job>>> = std::sync::Mutex::new(Vec::new());

/// Most evaluation threads kept waiting (more are created under load and
/// end when their job is done).
const MAX_IDLE: usize = 16;

/// Hand `job` to a waiting evaluation thread, or to a new one.
fn dispatch(mut job: Job) -> std::io::Result<()> {
    loop {
        let waiting = IDLE.lock().ok().and_then(|mut idle| idle.pop());
        let Some(worker) = waiting else { break };
        match worker.send(job) {
            Ok(()) => return Ok(()),
            // That thread has ended: try the next.
            Err(mpsc::SendError(back)) => job = back,
        }
    }
    std::thread::Builder::new().name("cachet-policy".into()).stack_size(EVAL_STACK).spawn(move || work_on(job)).map(|_| ())
}

/// An evaluation thread: run the job, then wait for another while fewer
/// than [`MAX_IDLE`] threads are waiting.
fn work_on(mut job: Job) {
    loop {
        job();
        let (tx, rx) = mpsc::channel::<Job>();
        match IDLE.lock() {
            Ok(mut idle) if idle.len() < MAX_IDLE => idle.push(tx),
            _ => return,
        }
        match rx.recv() {
            Ok(next) => job = next,
            Err(_) => return,
        }
    }
}

/// Refuse policy text holding a number whose exponent is over
/// [`MAX_EXPONENT`] (`1e999999999`): regorus would expand it to an integer
/// of that many digits while parsing.
pub(crate) fn check_text(text: &str) -> Result<(), PolicyError> {
    match huge_exponent(text) {
        Some(n) => Err(PolicyError::Refused(format!("the number {n} has an exponent larger than {MAX_EXPONENT}; write a smaller number"))),
        None => Ok(()),
    }
}

/// The first number-like token (`1e500`, `2.5E+999`) in `s` whose decimal
/// exponent exceeds [`MAX_EXPONENT`].
fn huge_exponent(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if (b[i] == b'e' || b[i] == b'E') && i > 0 && (b[i - 1].is_ascii_digit() || b[i - 1] == b'.') {
            let mut j = i + 1;
            if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
                j += 1;
            }
            let start = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let digits = &s[start..j];
            let big =
                !digits.is_empty() && digits.trim_start_matches('0').len() > 3 || digits.parse::<u32>().is_ok_and(|e| e > MAX_EXPONENT);
            // A number token, not part of a word or a hex string: nothing
            // alphanumeric right before the mantissa or right after the exponent.
            let from = s[..i].rfind(|c: char| !(c.is_ascii_digit() || c == '.')).map_or(0, |p| p + 1);
            let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            if big && !word(s[..from].chars().next_back()) && !word(s[j..].chars().next()) {
                return Some(s[from..j].chars().take(40).collect());
            }
            i = j;
        } else {
            i += 1;
        }
    }
    None
}

/// The size of a value as if written out flat (shared parts counted each
/// time they appear), or `None` once it passes `limit`. Iterative, and it
/// stops early, so it costs at most `limit` steps whatever the value.
pub fn flat_size(v: &Value, limit: usize) -> Option<usize> {
    let mut total = 0usize;
    let mut stack: Vec<&Value> = vec![v];
    while let Some(v) = stack.pop() {
        total = total.saturating_add(match v {
            Value::String(s) => s.len() + 2,
            Value::Number(_) => 8,
            Value::Array(a) => {
                stack.extend(a.iter());
                2 + a.len()
            }
            Value::Set(s) => {
                stack.extend(s.iter());
                2 + s.len()
            }
            Value::Object(o) => {
                for (k, v) in o.iter() {
                    stack.push(k);
                    stack.push(v);
                }
                2 + 2 * o.len()
            }
            _ => 4,
        });
        if total > limit {
            return None;
        }
    }
    Some(total)
}

fn too_large(name: &str, what: &str) -> anyhow::Error {
    anyhow::anyhow!("{name}: {what} would be larger than the {MAX_VALUE_BYTES}-byte limit on values a policy makes")
}

/// Refuse arguments whose flattened size is over the value limit.
fn args_fit(name: &str, args: &[Value]) -> anyhow::Result<()> {
    for a in args {
        if flat_size(a, MAX_VALUE_BYTES).is_none() {
            return Err(too_large(name, "an argument"));
        }
    }
    Ok(())
}

fn string(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        _ => None,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// Length of `s` with every `from` replaced by `to` (Go's `strings.Replace`
/// with an empty `from` inserts `to` around every character).
fn replaced_len(s: &str, from: &str, to: &str) -> usize {
    let n = if from.is_empty() { s.chars().count() + 1 } else { s.matches(from).count() };
    s.len().saturating_sub(n.saturating_mul(from.len())).saturating_add(n.saturating_mul(to.len()))
}

/// The checks made before a guarded builtin runs.
fn precheck(name: &str, args: &[Value]) -> anyhow::Result<()> {
    match name {
        "numbers.range" | "numbers.range_step" => {
            let (Some(a), Some(b)) = (args.first().and_then(number), args.get(1).and_then(number)) else {
                return Ok(()); // not numbers: regorus's own error or undefined
            };
            let step = if name == "numbers.range_step" { args.get(2).and_then(number).unwrap_or(1.0) } else { 1.0 };
            let len = (b - a).abs() / step.abs().max(1.0) + 1.0;
            if !len.is_finite() || len > MAX_RANGE_LEN {
                anyhow::bail!("{name}: {len:.0} elements is more than the {MAX_RANGE_LEN} a policy may make; use a smaller range");
            }
            Ok(())
        }
        "sprintf" => {
            if let Some(format) = args.first().and_then(string) {
                check_format_widths(format)?;
            }
            args_fit(name, args)
        }
        "replace" => {
            args_fit(name, args)?;
            if let (Some(s), Some(from), Some(to)) =
                (args.first().and_then(string), args.get(1).and_then(string), args.get(2).and_then(string))
            {
                if replaced_len(s, from, to) > MAX_VALUE_BYTES {
                    return Err(too_large(name, "the result"));
                }
            }
            Ok(())
        }
        "strings.replace_n" => {
            args_fit(name, args)?;
            if let (Some(Value::Object(pairs)), Some(s)) = (args.first(), args.get(1).and_then(string)) {
                // Each pair is applied to the previous result: bound each step.
                let mut len = s.len();
                for (from, to) in pairs.iter() {
                    let (Some(from), Some(to)) = (string(from), string(to)) else {
                        continue;
                    };
                    let n = if from.is_empty() { len + 1 } else { len / from.len() };
                    len = len.saturating_add(n.saturating_mul(to.len()));
                    if len > MAX_VALUE_BYTES {
                        return Err(too_large(name, "the result"));
                    }
                }
            }
            Ok(())
        }
        "regex.replace" => {
            args_fit(name, args)?;
            if let (Some(s), Some(to)) = (args.first().and_then(string), args.get(2).and_then(string)) {
                // At most one match per position; `$0`-style references copy
                // up to the whole input into each replacement.
                let per = if to.contains('$') { to.len().saturating_mul(s.len().max(1)) } else { to.len() };
                if s.len().saturating_add((s.len() + 1).saturating_mul(per)) > MAX_VALUE_BYTES {
                    return Err(too_large(name, "the result"));
                }
            }
            Ok(())
        }
        "bits.lsh" => {
            if args.get(1).and_then(number).is_some_and(|n| n > MAX_SHIFT_BITS) {
                anyhow::bail!("bits.lsh: a shift over {MAX_SHIFT_BITS} bits is refused");
            }
            Ok(())
        }
        "to_number" | "units.parse" | "units.parse_bytes" | "json.unmarshal" => {
            args_fit(name, args)?;
            if let Some(n) = args.first().and_then(string).and_then(huge_exponent) {
                anyhow::bail!("{name}: the number {n} has an exponent larger than {MAX_EXPONENT}");
            }
            Ok(())
        }
        _ => args_fit(name, args),
    }
}

/// Refuse `sprintf` widths and precisions over [`MAX_FORMAT_WIDTH`] (regorus
/// pads by allocating the whole width at once).
fn check_format_widths(format: &str) -> anyhow::Result<()> {
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        let mut width: u64 = 0;
        while let Some(d) = chars.peek().copied().filter(|d| d.is_ascii_digit() || *d == '.') {
            chars.next();
            if let Some(d) = d.to_digit(10) {
                width = width.saturating_mul(10).saturating_add(u64::from(d));
            } else {
                width = 0;
            }
            if width > MAX_FORMAT_WIDTH {
                anyhow::bail!("sprintf: a width or precision over {MAX_FORMAT_WIDTH} is refused");
            }
        }
        chars.next(); // the verb (or the second `%` of `%%`)
    }
    Ok(())
}

/// The builtins shadowed by guarded versions: those whose result can be much
/// larger than their arguments (or that flatten shared values), and those
/// that parse numbers.
const GUARDED: &[&str] = &[
    "numbers.range",
    "numbers.range_step",
    "sprintf",
    "replace",
    "strings.replace_n",
    "regex.replace",
    "regex.split",
    "regex.find_n",
    "concat",
    "array.concat",
    "split",
    "upper",
    "lower",
    "strings.reverse",
    "json.marshal",
    "json.marshal_with_options",
    "json.unmarshal",
    "json.patch",
    "base64.encode",
    "base64url.encode",
    "base64url.encode_no_pad",
    "hex.encode",
    "urlquery.encode",
    "urlquery.encode_object",
    "object.union",
    "object.union_n",
    "union",
    "bits.lsh",
    "to_number",
    "units.parse",
    "units.parse_bytes",
    "format_int",
];

/// Call regorus's own builtin. Its parameter expressions and span are only
/// used to place error messages, so placeholders do.
fn call_builtin(name: &str, args: &[Value]) -> anyhow::Result<Value> {
    let (f, _) = BUILTINS.get(name).ok_or_else(|| anyhow::anyhow!("{name}: not a builtin"))?;
    let source = Source::from_contents(format!("<{name}>"), String::new())?;
    let span = Span { source, line: 1, col: 1, start: 0, end: 0 };
    let params: Vec<Ref<Expr>> = args.iter().map(|_| Ref::new(Expr::Null { span: span.clone(), value: Value::Null, eidx: 0 })).collect();
    f(&span, &params, args, false)
}

/// Shadow the guarded builtins of `engine` (before any policy is added):
/// each checks its arguments, calls the real builtin, and checks the result.
pub(crate) fn install(engine: &mut regorus::Engine) -> Result<(), PolicyError> {
    for &name in GUARDED {
        let Some((_, nargs)) = BUILTINS.get(name) else {
            continue;
        };
        let guarded = move |args: Vec<Value>| -> anyhow::Result<Value> {
            precheck(name, &args)?;
            let out = call_builtin(name, &args)?;
            if flat_size(&out, MAX_VALUE_BYTES).is_none() {
                return Err(too_large(name, "the result"));
            }
            Ok(out)
        };
        engine
            .add_extension(name.to_string(), *nargs, Box::new(guarded))
            .map_err(|e| PolicyError::Compile(format!("guarding builtin {name}: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn evaluation_threads_are_reused_and_keep_their_stack() {
        // Sequential jobs find a waiting thread (other tests may take one
        // meanwhile, so some new threads are allowed, not one per job).
        let mut threads = std::collections::HashSet::new();
        for _ in 0..50 {
            let id = run("probe", || Ok(std::thread::current().id())).unwrap();
            threads.insert(id);
        }
        assert!(threads.len() < 25, "{} threads for 50 jobs", threads.len());
        // A reused thread still has the large stack: 16 MiB of locals fit.
        let deep = run("deep", || {
            let big = [1u8; 16 << 20];
            Ok(std::hint::black_box(&big).iter().map(|&b| usize::from(b)).sum::<usize>())
        });
        assert_eq!(deep.unwrap(), 16 << 20);
        // A panic in a job is an error, and the thread serves the next job.
        assert!(run::<()>("boom", || panic!("inside the engine")).is_err());
        assert_eq!(run("after", || Ok(7)).unwrap(), 7);
    }

    use super::*;

    #[test]
    fn exponents_are_found_in_text() {
        assert_eq!(huge_exponent("x := 1e999999999").as_deref(), Some("1e999999999"));
        assert_eq!(huge_exponent("x := 2.5E+401").as_deref(), Some("2.5E+401"));
        assert_eq!(huge_exponent("x := 1e400 # ok"), None);
        assert_eq!(huge_exponent("rule_e12345 := true"), None);
        assert_eq!(huge_exponent("\"sha384e\" 0xe"), None);
        assert_eq!(huge_exponent("\"ab9e4521cd\" 9e4521"), Some("9e4521".into()));
    }

    #[test]
    fn flat_size_stops_early_on_shared_values() {
        let mut v = Value::from("abcdefgh");
        for _ in 0..64 {
            v = Value::from(vec![v.clone(), v]);
        }
        assert_eq!(flat_size(&v, 1 << 20), None);
        assert_eq!(flat_size(&Value::from("abc"), 10), Some(5));
    }

    #[test]
    fn format_widths_are_bounded() {
        assert!(check_format_widths("%d %s %05d %.3f %%").is_ok());
        assert!(check_format_widths("%099999999999999999999d").is_err());
        assert!(check_format_widths("%.10001f").is_err());
    }

    #[test]
    fn every_guarded_name_is_a_builtin_with_these_features() {
        // Some (base64url, urlquery, json.patch) come only with regorus
        // features not enabled here; the ones that blew up must be guarded.
        for name in [
            "numbers.range",
            "numbers.range_step",
            "sprintf",
            "replace",
            "strings.replace_n",
            "concat",
            "json.marshal",
            "bits.lsh",
            "to_number",
        ] {
            assert!(GUARDED.contains(&name) && BUILTINS.contains_key(name), "{name}");
        }
    }
}
