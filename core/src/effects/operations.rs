//! The engine's effect operations: checks, then one compare-and-set transition on the store.

use serde_json::Value;

use super::checks::{
    check_agent, check_by, check_key, check_resolver, check_result, check_token, clean_error,
};
use super::transitions::{abort, begin, finish, missing, resolve};
use super::{Begin, Effect, EffectEvent, EffectFilter, EffectState, Resolve, ResolveAction};
use crate::access::Principal;
use crate::engine::{Engine, check_namespace, check_text};
use crate::error::{Error, Result};
use crate::model::now_ms;
use crate::schema;

impl Engine {
    /// Begins the effect `(namespace, key)` for an attempt holding `token` (random; generated
    /// when `None`), begun by `by` (who or which process). Returns [`Begin::Run`] (run the
    /// function, then [`Engine::effect_finish`] or [`Engine::effect_abort`]) or
    /// [`Begin::Done`] (the recorded result: do not run it); [`Error::EffectInDoubt`] when
    /// another attempt began and never recorded an outcome. A repeat with the running
    /// attempt's own token is [`Begin::Run`] again (a retried request).
    ///
    /// ```no_run
    /// # async fn demo(engine: inloop_core::Engine) -> inloop_core::Result<()> {
    /// use inloop_core::access::Principal;
    /// use inloop_core::effects::Begin;
    /// use serde_json::json;
    /// let who = Principal::Trusted;
    /// match engine.effect_begin("default", "charge-A-1", None, Some("worker-1"), &who).await? {
    ///     Begin::Run { token, .. } => {
    ///         let receipt = json!({"charge": "ch_1"}); // ... do it ...
    ///         engine.effect_finish("default", "charge-A-1", &token, receipt, &who).await?;
    ///     }
    ///     Begin::Done { result, .. } => println!("already done: {result}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn effect_begin(
        &self,
        namespace: &str,
        key: &str,
        token: Option<&str>,
        by: Option<&str>,
        who: &Principal,
    ) -> Result<Begin> {
        check_key(namespace, key)?;
        check_agent(namespace, who, true)?;
        let token = match token {
            Some(t) => {
                check_token(t)?;
                t.to_string()
            }
            None => crate::users::random_token(),
        };
        let by = by.map(str::trim).filter(|b| !b.is_empty());
        if let Some(b) = by {
            check_text("by", b, schema::MAX_ACTOR_BYTES)?;
        }
        // `done` is final: a replay needs no write lock.
        if let Some(e) = self.store().effect(namespace, key).await?
            && e.state == EffectState::Done
        {
            return begin(Some(&e), (namespace, key), &token, by, now_ms()).1;
        }
        let now = now_ms();
        let (_, out) = self
            .store()
            .effect_transition(namespace, key, now, |cur| {
                begin(cur, (namespace, key), &token, by, now)
            })
            .await?;
        out
    }

    /// Records the result of the attempt holding `token`: the effect is `done` and every later
    /// begin returns `result`. [`Error::EffectConflict`] when the token no longer holds it
    /// (a person resolved it meanwhile); `too_large` over 256 KiB of canonical JSON.
    pub async fn effect_finish(
        &self,
        namespace: &str,
        key: &str,
        token: &str,
        result: Value,
        who: &Principal,
    ) -> Result<Effect> {
        check_key(namespace, key)?;
        check_agent(namespace, who, true)?;
        check_token(token)?;
        check_result(&result)?;
        let now = now_ms();
        let (after, out) = self
            .store()
            .effect_transition(namespace, key, now, |cur| {
                finish(cur, (namespace, key), token, &result, now)
            })
            .await?;
        out?;
        after.ok_or_else(|| missing(namespace, key))
    }

    /// Releases the attempt holding `token` after its function raised: the effect is
    /// `failed` (with `error`), and the next begin runs it again.
    pub async fn effect_abort(
        &self,
        namespace: &str,
        key: &str,
        token: &str,
        error: Option<&str>,
        who: &Principal,
    ) -> Result<Effect> {
        check_key(namespace, key)?;
        check_agent(namespace, who, true)?;
        check_token(token)?;
        let error = clean_error(error);
        let now = now_ms();
        let (after, out) = self
            .store()
            .effect_transition(namespace, key, now, |cur| {
                abort(cur, (namespace, key), token, &error, now)
            })
            .await?;
        out?;
        after.ok_or_else(|| missing(namespace, key))
    }

    /// Resolves an effect in doubt (`running`), as a person: [`ResolveAction::MarkDone`]
    /// records it done with `r.result` (later calls return it; the attempt that was in doubt
    /// can no longer record anything), [`ResolveAction::AllowRetry`] lets the next call run
    /// it again. With `r.attempt`, only that attempt is resolved ([`Error::EffectConflict`]
    /// otherwise). Trusted callers, admins, and API keys of the namespace with
    /// `--allow-answer`; audited with who, when and what.
    pub async fn effect_resolve(
        &self,
        namespace: &str,
        key: &str,
        mut r: Resolve,
        who: &Principal,
    ) -> Result<Effect> {
        check_key(namespace, key)?;
        check_resolver(namespace, who)?;
        let by = match who {
            Principal::User(u) => u.name.clone(),
            _ => r.by.clone().unwrap_or_default(),
        };
        check_by(&by)?;
        if let Some(n) = r.note.as_deref() {
            check_text("note", n, schema::MAX_TITLE_BYTES)?;
        }
        r.note = r.note.filter(|n| !n.trim().is_empty());
        match (r.action, &r.result) {
            (ResolveAction::MarkDone, Some(v)) => check_result(v)?,
            (ResolveAction::AllowRetry, Some(_)) => {
                return Err(Error::InvalidArgument(
                    "a result is given only to mark an effect done".into(),
                ));
            }
            _ => {}
        }
        let now = now_ms();
        let (after, out) = self
            .store()
            .effect_transition(namespace, key, now, |cur| {
                resolve(cur, (namespace, key), &r, &by, now)
            })
            .await?;
        out?;
        after.ok_or_else(|| missing(namespace, key))
    }

    /// The effect `(namespace, key)`.
    pub async fn effect(&self, namespace: &str, key: &str, who: &Principal) -> Result<Effect> {
        check_key(namespace, key)?;
        check_agent(namespace, who, false)?;
        self.store()
            .effect(namespace, key)
            .await?
            .ok_or_else(|| missing(namespace, key))
    }

    /// Effects matching `filter`, oldest first (an API key sees its namespace only).
    pub async fn effects(&self, filter: EffectFilter, who: &Principal) -> Result<Vec<Effect>> {
        let namespace = match (who, filter.namespace) {
            (Principal::ApiKey(k), Some(ns)) if ns != k.namespace => {
                return Err(Error::Forbidden(format!(
                    "this API key is for namespace {:?}, not {ns:?}",
                    k.namespace
                )));
            }
            (Principal::ApiKey(k), _) => Some(k.namespace.clone()),
            (_, ns) => ns,
        };
        if let Some(ns) = &namespace {
            check_namespace(ns)?;
            check_agent(ns, who, false)?;
        } else {
            check_agent("", who, false)?;
        }
        let state = match filter.state.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(s.parse::<EffectState>()?),
            None => None,
        };
        let limit = filter.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(Error::InvalidArgument(format!(
                "limit must be 1..=1000, not {limit}"
            )));
        }
        self.store()
            .effects(namespace.as_deref(), state, i64::from(limit))
            .await
    }

    /// Effects in doubt (`running`), oldest first: what a person must look at.
    pub async fn effects_in_doubt(
        &self,
        namespace: Option<&str>,
        who: &Principal,
    ) -> Result<Vec<Effect>> {
        let filter = EffectFilter {
            namespace: namespace.map(str::to_string),
            state: Some("in_doubt".into()),
            limit: Some(1000),
        };
        self.effects(filter, who).await
    }

    /// How many effects are in doubt, all namespaces (one query; for metrics).
    pub async fn effects_in_doubt_count(&self) -> Result<u64> {
        Ok(self.store().effects_in_doubt_count().await?.max(0) as u64)
    }

    /// The effect's audit trail, oldest first.
    pub async fn effect_audit(
        &self,
        namespace: &str,
        key: &str,
        who: &Principal,
    ) -> Result<Vec<EffectEvent>> {
        let e = self.effect(namespace, key, who).await?;
        self.store().effect_audit(&e.id).await
    }
}
