//! The shared test vectors (`tests/vectors/*.json`), run against the engine. The Python and
//! TypeScript suites read the same files, so the three surfaces stay in lockstep.

use std::path::PathBuf;

use inloop_core::{Answer, Engine, EngineOptions, Error, NewTask, Status};
use serde_json::Value;

fn vectors() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .expect("tests/vectors exists")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (
                p.display().to_string(),
                serde_json::from_str(&text).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 5,
        "expected the vector files in {}",
        dir.display()
    );
    out
}

/// `(code, sorted field-error paths)` of an engine error.
fn shape(e: &Error) -> (String, Vec<String>) {
    let mut paths: Vec<String> = match e {
        Error::InvalidAnswer { errors } | Error::InvalidPayload { errors } => {
            errors.iter().map(|f| f.path.clone()).collect()
        }
        _ => Vec::new(),
    };
    paths.sort();
    paths.dedup();
    (e.code().to_string(), paths)
}

fn expected_error(v: &Value) -> (String, Vec<String>) {
    let code = v["error"].as_str().unwrap().to_string();
    let paths = v["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    (code, paths)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_vector_behaves_as_written() {
    let dir = std::env::temp_dir().join(format!("inloop-vectors-{}", uuid::Uuid::now_v7()));
    let url = format!("sqlite://{}/v.db", dir.display());
    let engine = Engine::open(&url, EngineOptions::default()).await.unwrap();
    for (file, v) in vectors() {
        let name = v["name"].as_str().unwrap();
        let new = NewTask {
            namespace: Some(format!("v-{name}")),
            key: Some(name.to_string()),
            title: v["title"].as_str().unwrap().to_string(),
            payload: v["payload"].clone(),
            payload_schema: (!v["payload_schema"].is_null()).then(|| v["payload_schema"].clone()),
            response_schema: v["response_schema"].clone(),
            ..Default::default()
        };
        let created = engine.create(new).await;
        let task = match (&v["create"], created) {
            (Value::String(s), Ok(c)) if s == "ok" => c.task,
            (Value::Object(_), Err(e)) => {
                assert_eq!(shape(&e), expected_error(&v["create"]), "{file}: create");
                continue;
            }
            (want, got) => panic!("{file}: create: wanted {want}, got {got:?}"),
        };
        let mut accepted: Option<Value> = None;
        for (i, step) in v["answers"].as_array().unwrap().iter().enumerate() {
            let a = Answer {
                response: step["answer"].clone(),
                by: format!("person-{i}"),
                channel: "vectors".into(),
            };
            let got = engine.answer(task.id, a).await;
            match (&step["expect"], got) {
                (Value::String(s), Ok(t)) if s == "accepted" => {
                    assert_eq!(t.status, Status::Completed, "{file}: answer {i}");
                    assert_eq!(t.response.as_ref(), Some(&step["answer"]));
                    accepted = Some(step["answer"].clone());
                }
                (Value::String(s), Err(Error::Conflict { .. })) if s == "conflict" => {}
                (Value::Object(_), Err(e)) => {
                    assert_eq!(
                        shape(&e),
                        expected_error(&step["expect"]),
                        "{file}: answer {i}"
                    );
                    let now = engine.get(task.id).await.unwrap();
                    assert_eq!(
                        now.status,
                        Status::Pending,
                        "{file}: answer {i} left it pending"
                    );
                }
                (want, got) => panic!("{file}: answer {i}: wanted {want}, got {got:?}"),
            }
        }
        let end = engine.get(task.id).await.unwrap();
        assert_eq!(
            end.response, accepted,
            "{file}: the accepted answer is stored"
        );
    }
    engine.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
