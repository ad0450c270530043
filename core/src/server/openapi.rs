//! The error responses every operation of the OpenAPI document can give, added in one place
//! from what the operation has (a body, parameters, an API key), so that the document names
//! every status the server sends (checked by schemathesis in `scripts/fuzz.sh` and by
//! `core/tests/server.rs`).

use utoipa::Modify;
use utoipa::openapi::path::Operation;
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder};

/// Adds, where the handler's own annotation does not already say more:
/// `400` and `413` to operations with a body, `401` to those that need an API key, `403` to
/// those that take a `namespace`, `422` to those with a body or parameters, and `503` to every
/// one that reads the database (all but `/healthz` and the document itself).
pub(super) struct StandardErrors;

/// Operations that never touch the database.
const NO_DATABASE: &[&str] = &["/healthz", "/api/v1/openapi.json"];

fn error(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build(),
    )
}

fn needs_key(op: &Operation) -> bool {
    // `security(())` (one empty requirement) marks the public operations.
    match &op.security {
        None => true,
        Some(reqs) => !reqs
            .iter()
            .all(|r| serde_json::to_value(r).is_ok_and(|v| v == serde_json::json!({}))),
    }
}

fn takes_namespace(op: &Operation) -> bool {
    op.parameters
        .iter()
        .flatten()
        .any(|p| p.name == "namespace")
}

impl Modify for StandardErrors {
    fn modify(&self, openapi: &mut OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for op in ops.into_iter().flatten() {
                let body = op.request_body.is_some();
                let params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let (secured, namespaced) = (needs_key(op), takes_namespace(op));
                let mut add = |status: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error(description));
                };
                if body {
                    add(
                        "400",
                        "Malformed JSON, or JSON of the wrong shape (`invalid_json`)",
                    );
                    add("413", "The body is over 1 MiB (`too_large`)");
                }
                if body || params {
                    add(
                        "422",
                        "A malformed path or query parameter, or an invalid value \
                         (`invalid_argument` and the other `invalid_*` codes)",
                    );
                }
                if secured {
                    add("401", "Missing or bad API key (`unauthorized`)");
                }
                if namespaced {
                    add("403", "Another namespace than the key's (`forbidden`)");
                }
                if !NO_DATABASE.contains(&path.as_str()) {
                    add(
                        "503",
                        "The database does not answer (`database`), or the server is shutting \
                         down (`unavailable`); retry",
                    );
                }
            }
        }
    }
}
