//! Run script: a Rhai script with a copy of the contact as the `contact` map.
//! It can compute, never reach out: no modules or files, no `eval`, output
//! discarded, and bounded in operations, time, nesting and sizes. The
//! participant does not wait for it; a script that errors or runs too long
//! fails its outbox entry with the reason.

use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, Scope};
use serde_json::Value;

use crate::runtime::outbox::Failure;

pub const MAX_OPERATIONS: u64 = 1_000_000;
pub const TIME_LIMIT: Duration = Duration::from_secs(2);

fn engine(deadline: Instant) -> Engine {
    let mut engine = Engine::new();
    engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    engine.disable_symbol("eval");
    engine.on_print(|_| {});
    engine.on_debug(|_, _, _| {});
    engine.set_max_operations(MAX_OPERATIONS);
    engine.set_max_expr_depths(64, 32);
    engine.set_max_call_levels(32);
    engine.set_max_string_size(64 * 1024);
    engine.set_max_array_size(10_000);
    engine.set_max_map_size(10_000);
    engine.on_progress(move |_| (Instant::now() > deadline).then(|| Dynamic::from("time limit")));
    engine
}

/// Runs `script` on a blocking thread; `Ok` carries what it evaluated to.
pub async fn run(script: String, contact: Value) -> Result<String, Failure> {
    if script.trim().is_empty() {
        return Err(Failure::permanent("the script is empty"));
    }
    let task = tokio::task::spawn_blocking(move || {
        let engine = engine(Instant::now() + TIME_LIMIT);
        let mut scope = Scope::new();
        let contact = rhai::serde::to_dynamic(&contact).map_err(|err| Failure::permanent(format!("the contact cannot be given to the script: {err}")))?;
        // A copy, not a constant: assigning to a constant map's property
        // panics inside Rhai 1.27 (caught below, but better not reached).
        scope.push("contact", contact);
        engine
            .eval_with_scope::<Dynamic>(&mut scope, &script)
            .map(|value| value.to_string())
            .map_err(|err| match *err {
                rhai::EvalAltResult::ErrorTerminated(..) => {
                    Failure::permanent(format!("the script ran longer than {} s and was stopped", TIME_LIMIT.as_secs()))
                }
                rhai::EvalAltResult::ErrorTooManyOperations(..) => {
                    Failure::permanent(format!("the script ran more than {MAX_OPERATIONS} operations and was stopped"))
                }
                other => Failure::permanent(format!("the script failed: {other}")),
            })
    });
    // A panic inside the interpreter ends this task, never the worker.
    task.await.map_err(|err| Failure::permanent(format!("the script crashed: {err}")))?
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn scripts_compute_with_the_contact_but_cannot_loop_forever_or_reach_out() {
        let contact = json!({"email": "ada@x.test", "fields": {"score": 41}});
        assert_eq!(run("contact.fields.score + 1".into(), contact.clone()).await.unwrap(), "42");
        let endless = run("loop { }".into(), contact.clone()).await.unwrap_err();
        assert!(endless.reason.contains("was stopped"), "{}", endless.reason);
        let import = run("import \"/etc/passwd\" as p; 1".into(), contact.clone()).await.unwrap_err();
        assert!(import.reason.starts_with("the script failed"), "{}", import.reason);
        let eval = run("eval(\"1\")".into(), contact.clone()).await.unwrap_err();
        assert!(eval.reason.starts_with("the script failed"), "{}", eval.reason);
        assert_eq!(run("contact.email = \"x\"; contact.email".into(), contact).await.unwrap(), "x", "its own copy");
    }
}
