//! The endpoints: each finds the instance, calls the instance layer as the
//! CLI's commands do (the same code, the same locks), and answers JSON.

use super::error::{ApiError, Conflict, ErrorBody};
use super::App;
use crate::engine::Engine;
use crate::instance::provision::{self, SetupRequest};
use crate::instance::snapshot::{self, SnapshotView};
use crate::instance::usage::{self, StatsView};
use crate::instance::view::{self, InstanceView};
use crate::instance::{consent, lifecycle, nodes, services, teardown, Instance, Named};
use crate::recipe::settings::Settings;
use crate::support::names;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

type Answer<T> = Result<T, ApiError>;

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the server answers.
    status: String,
    /// devinst's version.
    version: String,
}

#[utoipa::path(get, path = "/health", tag = "server",
    responses((status = 200, description = "The server answers", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

#[utoipa::path(get, path = "/v1/instances", tag = "instances", security(("token" = [])),
    responses(
        (status = 200, description = "Every instance on this host, as `devinst list --json`", body = [InstanceView]),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody)))]
pub async fn list_instances(State(app): State<Arc<App>>) -> Answer<Json<Vec<InstanceView>>> {
    // Without an engine the states are `unknown`, as in `devinst list`.
    let engine = Engine::connect(&app.engine_choice(None)).await.ok();
    Ok(Json(view::list(engine.as_ref()).await?))
}

/// `POST /v1/instances`: what `devinst setup` is given.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInstance {
    /// An absolute path to a directory in the worktree.
    worktree: String,
    /// The instance's name (default: the worktree's directory name).
    name: Option<String>,
    /// A `[tiers.NAME]` of its devinst.toml.
    tier: Option<String>,
}

#[utoipa::path(post, path = "/v1/instances", tag = "instances", security(("token" = [])),
    request_body = CreateInstance,
    responses(
        (status = 201, description = "Set up (as `devinst setup`); nothing is created on the engine yet", body = InstanceView),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 409, description = "It cannot be set up as things stand (the recipe needs `devinst trust`, the name is another worktree's, no port is free)", body = ErrorBody),
        (status = 422, description = "A value is invalid: the worktree is not an existing absolute directory, the name or tier is not valid", body = ErrorBody)))]
pub async fn create_instance(
    State(app): State<Arc<App>>,
    body: Result<Json<CreateInstance>, JsonRejection>,
) -> Answer<(StatusCode, Json<InstanceView>)> {
    let Json(request) = body.map_err(rejected_body)?;
    let dir = std::path::Path::new(&request.worktree);
    if !dir.is_absolute() || !dir.is_dir() {
        return Err(ApiError::invalid(format!(
            "`worktree` must be the absolute path of an existing directory, not `{}`",
            request.worktree
        )));
    }
    if let Some(name) = &request.name {
        names::validate(name)
            .map_err(|err| ApiError::from_chain(StatusCode::UNPROCESSABLE_ENTITY, &err))?;
    }
    if let Some(tier) = &request.tier {
        check_tier(dir, tier)?;
    }
    let choose = |settings: &Settings| app.engine_choice(Some(settings));
    let setup = SetupRequest {
        dir,
        name: request.name.as_deref(),
        tier: request.tier,
    };
    let done = provision::setup(setup, &choose).await.conflict()?;
    let instance = Instance::find(&done.layout.root).conflict()?;
    Ok((StatusCode::CREATED, Json(status_of(&app, &instance).await?)))
}

#[utoipa::path(get, path = "/v1/instances/{name}", tag = "instances", security(("token" = [])),
    params(("name" = String, Path, description = "The instance's name")),
    responses(
        (status = 200, description = "The instance, as `devinst status --json`", body = InstanceView),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 404, description = "No such instance, or its worktree is gone", body = ErrorBody)))]
pub async fn get_instance(
    State(app): State<Arc<App>>,
    name: Result<Path<String>, PathRejection>,
) -> Answer<Json<InstanceView>> {
    let instance = here(name)?;
    Ok(Json(status_of(&app, &instance).await?))
}

#[utoipa::path(post, path = "/v1/instances/{name}/start", tag = "instances", security(("token" = [])),
    params(("name" = String, Path, description = "The instance's name")),
    responses(
        (status = 200, description = "Running and set up, as `devinst start` leaves it; answered when done", body = InstanceView),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 404, description = "No such instance, or its worktree is gone", body = ErrorBody),
        (status = 409, description = "Its recipe needs `devinst trust` first", body = ErrorBody),
        (status = 500, description = "The engine or a setup step failed", body = ErrorBody)))]
pub async fn start_instance(
    State(app): State<Arc<App>>,
    name: Result<Path<String>, PathRejection>,
) -> Answer<Json<InstanceView>> {
    let instance = here(name)?;
    let choice = app.engine_choice(Some(&instance.settings));
    consent::require(&instance.layout.root, &instance.settings, &choice).conflict()?;
    let engine = connect(&app, &instance).await?;
    lifecycle::ensure_running(&engine, &instance, false).await?;
    Ok(Json(view::status(&engine, &instance).await?))
}

#[utoipa::path(post, path = "/v1/instances/{name}/stop", tag = "instances", security(("token" = [])),
    params(("name" = String, Path, description = "The instance's name")),
    responses(
        (status = 200, description = "Stopped, every node and service, as `devinst stop` leaves it", body = InstanceView),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 404, description = "No such instance, or its worktree is gone", body = ErrorBody)))]
pub async fn stop_instance(
    State(app): State<Arc<App>>,
    name: Result<Path<String>, PathRejection>,
) -> Answer<Json<InstanceView>> {
    let instance = here(name)?;
    let engine = connect(&app, &instance).await?;
    lifecycle::stop(&engine, &instance.record.container).await?;
    nodes::stop_all(&engine, &instance).await?;
    services::stop_all(&engine, &instance).await?;
    Ok(Json(view::status(&engine, &instance).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Also remove `.sky-dev/`, snapshots, and services' data and volumes.
    purge: Option<bool>,
}

/// `DELETE /v1/instances/{name}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    name: String,
    purged: bool,
}

#[utoipa::path(delete, path = "/v1/instances/{name}", tag = "instances", security(("token" = [])),
    params(("name" = String, Path, description = "The instance's name"), DeleteQuery),
    responses(
        (status = 200, description = "Removed, as `devinst destroy [--purge] --yes`; also an instance whose worktree is gone", body = Deleted),
        (status = 400, description = "A query value is invalid", body = ErrorBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody)))]
pub async fn delete_instance(
    State(app): State<Arc<App>>,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> Answer<Json<Deleted>> {
    let Query(query) = query.map_err(rejected_query)?;
    let purge = query.purge.unwrap_or(false);
    let name = path_name(name)?;
    match named(&name)? {
        Named::Here(instance) => {
            let engine = connect(&app, &instance).await?;
            let extras = match purge {
                true => teardown::purge_extras(&engine, &instance).await?,
                false => Default::default(),
            };
            teardown::destroy(&engine, &instance, &extras, purge).await?;
        }
        Named::Gone { entry, .. } => {
            let engine = Engine::connect(&app.engine_choice(None)).await?;
            let volumes = match purge {
                true => teardown::gone_volumes(&engine, &entry).await?,
                false => Vec::new(),
            };
            teardown::remove_gone(&engine, &entry, purge).await?;
            teardown::remove_volumes(&engine, &volumes).await?;
            teardown::release(&entry)?;
        }
    }
    Ok(Json(Deleted {
        name,
        purged: purge,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// Only the last N lines.
    tail: Option<u64>,
    /// Keep the answer open and stream new output until the container stops.
    follow: Option<bool>,
    /// A `[cluster]` node's logs (0, the head, by default).
    node: Option<u16>,
}

#[utoipa::path(get, path = "/v1/instances/{name}/logs", tag = "instances", security(("token" = [])),
    params(("name" = String, Path, description = "The instance's name"), LogsQuery),
    responses(
        (status = 200, description = "The container's output, both streams, streamed with `follow=true`", content_type = "text/plain", body = String),
        (status = 400, description = "A query value is invalid", body = ErrorBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 404, description = "No such instance, node or container", body = ErrorBody)))]
pub async fn logs(
    State(app): State<Arc<App>>,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Answer<Response> {
    let Query(query) = query.map_err(rejected_query)?;
    let instance = here(name)?;
    let container = nodes::container_of(&instance, query.node.unwrap_or(0))
        .map_err(|err| ApiError::from_chain(StatusCode::NOT_FOUND, &err))?;
    let engine = connect(&app, &instance).await?;
    if engine.inspect(&container).await?.is_none() {
        return Err(ApiError::not_found(
            format!("container `{container}` does not exist, so it has no logs"),
            "start the instance first: POST /v1/instances/NAME/start",
        ));
    }
    let stream = engine
        .log_stream(&container, query.tail, query.follow.unwrap_or(false))
        .map(|chunk| chunk.map_err(|err| std::io::Error::other(format!("{err:#}"))));
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/instances/{name}/stats", tag = "instances", security(("token" = [])),
    params(("name" = String, Path, description = "The instance's name")),
    responses(
        (status = 200, description = "cpu and memory use, as `devinst stats --json`", body = StatsView),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 404, description = "No such instance, or its worktree is gone", body = ErrorBody),
        (status = 409, description = "It is not running", body = ErrorBody)))]
pub async fn stats(
    State(app): State<Arc<App>>,
    name: Result<Path<String>, PathRejection>,
) -> Answer<Json<StatsView>> {
    let instance = here(name)?;
    let engine = connect(&app, &instance).await?;
    Ok(Json(usage::stats(&engine, &instance).await.conflict()?))
}

#[utoipa::path(get, path = "/v1/instances/{name}/snapshots", tag = "snapshots", security(("token" = [])),
    params(("name" = String, Path, description = "The instance's name")),
    responses(
        (status = 200, description = "Its snapshots, oldest first, as `devinst snapshot list --json`", body = [SnapshotView]),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 404, description = "No such instance, or its worktree is gone", body = ErrorBody)))]
pub async fn list_snapshots(
    State(app): State<Arc<App>>,
    name: Result<Path<String>, PathRejection>,
) -> Answer<Json<Vec<SnapshotView>>> {
    let instance = here(name)?;
    let engine = connect(&app, &instance).await?;
    Ok(Json(snapshot::list(&engine, &instance).await?))
}

/// `POST /v1/instances/{name}/snapshots`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSnapshot {
    /// Its name (default: the time, `20261123-143005`).
    name: Option<String>,
}

/// A snapshot made.
#[derive(Debug, Serialize, ToSchema)]
pub struct Saved {
    name: String,
}

#[utoipa::path(post, path = "/v1/instances/{name}/snapshots", tag = "snapshots", security(("token" = [])),
    params(("name" = String, Path, description = "The instance's name")),
    request_body = CreateSnapshot,
    responses(
        (status = 201, description = "Saved, as `devinst snapshot save`", body = Saved),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 404, description = "No such instance, or its worktree is gone", body = ErrorBody),
        (status = 409, description = "A snapshot of that name exists, or there is no container to save", body = ErrorBody),
        (status = 422, description = "The snapshot name is invalid", body = ErrorBody)))]
pub async fn create_snapshot(
    State(app): State<Arc<App>>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<CreateSnapshot>, JsonRejection>,
) -> Answer<(StatusCode, Json<Saved>)> {
    let Json(request) = body.map_err(rejected_body)?;
    let instance = here(name)?;
    if let Some(snapshot) = &request.name {
        names::validate(snapshot)
            .map_err(|err| ApiError::from_chain(StatusCode::UNPROCESSABLE_ENTITY, &err))?;
    }
    let engine = connect(&app, &instance).await?;
    let name = snapshot::save(&engine, &instance, request.name)
        .await
        .conflict()?;
    Ok((StatusCode::CREATED, Json(Saved { name })))
}

#[utoipa::path(post, path = "/v1/instances/{name}/snapshots/{snapshot}/restore", tag = "snapshots", security(("token" = [])),
    params(("name" = String, Path, description = "The instance's name"), ("snapshot" = String, Path, description = "The snapshot's name")),
    responses(
        (status = 200, description = "Restored and running, as `devinst snapshot restore` leaves it", body = InstanceView),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 404, description = "No such instance or snapshot", body = ErrorBody),
        (status = 422, description = "The snapshot name is invalid", body = ErrorBody)))]
pub async fn restore_snapshot(
    State(app): State<Arc<App>>,
    names_in_path: Result<Path<(String, String)>, PathRejection>,
) -> Answer<Json<InstanceView>> {
    let Path((name, snap)) = names_in_path.map_err(rejected_path)?;
    names::validate(&snap)
        .map_err(|err| ApiError::from_chain(StatusCode::UNPROCESSABLE_ENTITY, &err))?;
    let instance = here_named(&name)?;
    let engine = connect(&app, &instance).await?;
    if !snapshot::list(&engine, &instance)
        .await?
        .iter()
        .any(|s| s.name == snap)
    {
        return Err(ApiError::not_found(
            format!("no snapshot `{snap}` of instance `{name}`"),
            "GET /v1/instances/NAME/snapshots lists them",
        ));
    }
    snapshot::restore(&engine, &instance, &snap).await?;
    let instance = Instance::find(&instance.layout.root)?;
    Ok(Json(view::status(&engine, &instance).await?))
}

/// Refuses a tier the worktree's recipe does not have (or a recipe that
/// cannot be read), as a value of the request.
fn check_tier(dir: &std::path::Path, tier: &str) -> Answer<()> {
    let invalid = |err: anyhow::Error| ApiError::from_chain(StatusCode::UNPROCESSABLE_ENTITY, &err);
    let worktree = crate::state::worktree::Worktree::discover(dir).map_err(invalid)?;
    let settings = Settings::load(&worktree.root).map_err(invalid)?;
    settings.limits_for(Some(tier)).map_err(invalid)?;
    Ok(())
}

/// Any other path.
pub async fn unknown_path() -> ApiError {
    ApiError::not_found(
        "no such endpoint".to_owned(),
        "GET /openapi.json lists the endpoints",
    )
}

/// The instance `name`, set up in its worktree.
fn here(name: Result<Path<String>, PathRejection>) -> Answer<Instance> {
    here_named(&path_name(name)?)
}

fn here_named(name: &str) -> Answer<Instance> {
    match named(name)? {
        Named::Here(instance) => Ok(*instance),
        Named::Gone { why, .. } => Err(ApiError::not_found(
            format!("instance `{name}` cannot be used: {why}"),
            "DELETE /v1/instances/NAME removes what is left of it",
        )),
    }
}

fn named(name: &str) -> Answer<Named> {
    // Names never hold a `/` or `..`; checking first keeps odd input away
    // from the registry and the file system.
    if names::validate(name).is_err() {
        return Err(ApiError::not_found(
            format!("no instance `{name}` (not a valid instance name)"),
            "GET /v1/instances lists the instances",
        ));
    }
    Instance::named(name).map_err(|err| {
        let not_there = format!("{err:#}").contains("in this host's registry");
        let status = match not_there {
            true => StatusCode::NOT_FOUND,
            false => StatusCode::CONFLICT,
        };
        ApiError::from_chain(status, &err)
    })
}

fn path_name(name: Result<Path<String>, PathRejection>) -> Answer<String> {
    Ok(name.map_err(rejected_path)?.0)
}

async fn connect(app: &App, instance: &Instance) -> Answer<Engine> {
    Engine::connect(&app.engine_choice(Some(&instance.settings)))
        .await
        .map_err(|err| ApiError::from_chain(StatusCode::SERVICE_UNAVAILABLE, &err))
}

/// The instance's status, or without an engine what the registry knows.
async fn status_of(app: &App, instance: &Instance) -> Answer<InstanceView> {
    match Engine::connect(&app.engine_choice(Some(&instance.settings))).await {
        Ok(engine) => Ok(view::status(&engine, instance).await?),
        Err(_) => view::list(None)
            .await?
            .into_iter()
            .find(|v| v.name == instance.record.name)
            .ok_or_else(|| {
                ApiError::from(anyhow::anyhow!(
                    "instance `{}` vanished",
                    instance.record.name
                ))
            }),
    }
}

fn rejected_body(rejection: JsonRejection) -> ApiError {
    let status = match rejection {
        // Well-formed JSON of the wrong shape.
        JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, rejection.body_text(), Some("send a JSON object with `Content-Type: application/json`; GET /openapi.json has its fields".to_owned()))
}

fn rejected_query(rejection: QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, rejection.body_text(), None)
}

fn rejected_path(rejection: PathRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, rejection.body_text(), None)
}
