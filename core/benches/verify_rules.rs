//! The added latency of the verification pipeline without an LLM (schema + rules) per answer.
//!
//!   cargo bench -p inloop-core --bench verify_rules -- [N] [DATABASE_URL]
//!
//! 1. In memory: the response-schema check alone, then schema + the rules, per answer (what
//!    runs under the task's row lock), averaged over N x 100 answers.
//! 2. End to end: `Engine::answer` on N tasks without verification and N tasks with the same
//!    schema plus two rules (one transaction each), interleaved; p50/p95/p99 of each and the
//!    difference of the medians. Default: a temp SQLite file; pass a PostgreSQL URL to use it.

use std::time::{Duration, Instant};

use inloop_core::schema::Schema;
use inloop_core::verify::{FailPolicy, Rule, Verification, run_rules};
use inloop_core::{Answer, Engine, EngineOptions, NewTask, Status};
use serde_json::{Value, json};

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {"approved": {"type": "boolean"}, "amount": {"type": "number"},
                       "reason": {"type": "string"}},
        "required": ["approved"]
    })
}

fn spec() -> Verification {
    Verification {
        rules: vec![
            Rule {
                name: "within the order amount".into(),
                when: Some(json!({"==": [{"var": "/answer/approved"}, true]})),
                check: json!({"<=": [{"var": "/answer/amount"}, {"var": "/payload/amount"}]}),
                message: "the refund may not exceed the order amount".into(),
            },
            Rule {
                name: "denials need a reason".into(),
                when: Some(json!({"==": [{"var": "/answer/approved"}, false]})),
                check: json!({"nonempty": {"var": "/answer/reason"}}),
                message: "say why the refund is denied".into(),
            },
        ],
        llm: None,
        max_attempts: 3,
        on_inconclusive: FailPolicy::FailClosed,
    }
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let dir = std::env::temp_dir().join(format!("inloop-verify-bench-{}", std::process::id()));
    let url = args.get(2).cloned().unwrap_or_else(|| {
        std::fs::create_dir_all(&dir).unwrap();
        format!("sqlite://{}", dir.join("b.db").display())
    });

    // 1. In memory, as under the row lock: compile the stored schema and check the answer
    //    (what every answer already costs), then the same plus the rules.
    let payload = json!({"order_id": "A-1", "amount": 500.0});
    let answer = json!({"approved": true, "amount": 120.0});
    let (s, v) = (schema(), spec());
    let reps = n * 100;
    let t = Instant::now();
    for _ in 0..reps {
        let c = Schema::compile("response_schema", &s).unwrap();
        assert!(c.errors(&answer).is_empty());
    }
    let schema_only = t.elapsed().as_secs_f64() * 1e6 / reps as f64;
    let t = Instant::now();
    for _ in 0..reps {
        let c = Schema::compile("response_schema", &s).unwrap();
        assert!(c.errors(&answer).is_empty());
        assert!(run_rules(&v, &payload, &answer).verdict == inloop_core::verify::Verdict::Pass);
    }
    let with_rules = t.elapsed().as_secs_f64() * 1e6 / reps as f64;
    let t = Instant::now();
    for _ in 0..reps {
        let _ = run_rules(&v, &payload, &answer);
    }
    let rules_only = t.elapsed().as_secs_f64() * 1e6 / reps as f64;
    println!(
        "in memory, {reps} answers: schema {schema_only:.2} us, schema + 2 rules {with_rules:.2} us, \
         rules alone {rules_only:.2} us per answer"
    );

    // 2. End to end through Engine::answer (one transaction each), interleaved.
    let engine = Engine::open(&url, EngineOptions::default()).await.unwrap();
    let run = format!("{}", std::process::id());
    let mut plain = Vec::with_capacity(n);
    let mut ruled = Vec::with_capacity(n);
    for i in 0..n + 50 {
        for verified in [false, true] {
            let t = engine
                .create(NewTask {
                    key: Some(format!("b-{run}-{i}-{verified}")),
                    title: "Approve the refund?".into(),
                    payload: payload.clone(),
                    response_schema: schema(),
                    verification: verified.then(spec),
                    ..Default::default()
                })
                .await
                .unwrap()
                .task;
            let started = Instant::now();
            let done = engine
                .answer(
                    t.id,
                    Answer {
                        response: answer.clone(),
                        by: "bench".into(),
                        channel: "bench".into(),
                    },
                )
                .await
                .unwrap();
            let took = started.elapsed();
            assert_eq!(done.status, Status::Completed);
            if i >= 50 {
                if verified {
                    ruled.push(took)
                } else {
                    plain.push(took)
                }
            }
        }
    }
    let backend = if url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    let (p50a, p95a, p99a) = (
        pct(&mut plain, 0.5),
        pct(&mut plain, 0.95),
        pct(&mut plain, 0.99),
    );
    let (p50b, p95b, p99b) = (
        pct(&mut ruled, 0.5),
        pct(&mut ruled, 0.95),
        pct(&mut ruled, 0.99),
    );
    println!(
        "Engine::answer ({backend}, n={n} each): no verification p50={p50a:.3} p95={p95a:.3} p99={p99a:.3} ms; \
         schema + 2 rules p50={p50b:.3} p95={p95b:.3} p99={p99b:.3} ms; added at p50: {:.3} ms",
        p50b - p50a
    );
    engine.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
