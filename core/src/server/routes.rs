//! The handlers, each annotated for the OpenAPI document.

use serde::Deserialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::openapi::StandardErrors;
use crate::access::Principal;
use crate::apikeys::ApiKey;
use crate::effects::{Begin, Effect, EffectEvent, EffectState, Resolve, ResolveAction};
use crate::engine::AgentVerdict;
use crate::model::{AuditEvent, Created, NewTask, Page, Status, Task};

mod effects;
mod service;
mod tasks;

pub(super) use effects::{
    abort_effect, begin_effect, effect_audit, finish_effect, get_effect, list_effects,
    resolve_effect,
};
pub(super) use service::{healthz, method_not_allowed, metrics, not_found, openapi, readyz};
pub(super) use tasks::{
    answer_task, cancel_task, claim_task, create_task, get_task, get_task_by_key, list_tasks,
    release_task, task_audit, verdict_task, wait_task,
};

/// The channel recorded for answers and cancels made through the API: `api:<key id>`, so the
/// audit trail keeps which key acted even when the request names someone else in `by`.
fn channel(key: &ApiKey) -> String {
    format!("api:{}", key.id)
}

/// Who acts when a request names nobody in `by`: `apikey:<key name>`.
fn actor(key: &ApiKey, by: Option<String>) -> String {
    by.unwrap_or_else(|| format!("apikey:{}", key.name))
}

/// The OpenAPI document of the server.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "inloop",
        description = "Durable human-in-the-loop tasks for AI agents (docs/api.md)."
    ),
    paths(
        tasks::create_task,
        tasks::list_tasks,
        tasks::get_task,
        tasks::get_task_by_key,
        tasks::answer_task,
        tasks::cancel_task,
        tasks::verdict_task,
        tasks::claim_task,
        tasks::release_task,
        tasks::task_audit,
        tasks::wait_task,
        effects::list_effects,
        effects::get_effect,
        effects::begin_effect,
        effects::finish_effect,
        effects::abort_effect,
        effects::resolve_effect,
        effects::effect_audit,
        service::openapi,
        service::metrics,
        service::healthz,
        service::readyz
    ),
    components(schemas(
        NewTask,
        Task,
        Created,
        Page,
        AuditEvent,
        Status,
        tasks::AnswerBody,
        tasks::CancelBody,
        tasks::ClaimBody,
        AgentVerdict,
        Effect,
        EffectState,
        EffectEvent,
        Begin,
        Resolve,
        ResolveAction,
        effects::BeginBody,
        effects::FinishBody,
        effects::AbortBody,
        crate::verify::Verification,
        crate::verify::Rejection,
        ErrorBody
    )),
    modifiers(&BearerAuth, &StandardErrors),
    security(("api_key" = []))
)]
pub struct ApiDoc;

pub(in crate::server) struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The caller's task `id`: `404` for an unknown id and for a task of another namespace
/// (whose existence is not revealed; the core's access rules decide).
async fn own_task(state: &AppState, key: &ApiKey, id: Uuid) -> Result<Task, ApiError> {
    Ok(state.engine.get_as(id, &as_principal(key)).await?)
}

fn as_principal(key: &ApiKey) -> Principal {
    Principal::ApiKey(key.clone())
}

/// Which namespace a by-key lookup means.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(in crate::server) struct NamespaceParam {
    /// The key's namespace (another is `403 forbidden`); implied when absent.
    namespace: Option<String>,
}
