//! `devinst serve`: the HTTP API and dashboard over the instance layer, a
//! second front end beside `commands`. It calls what the commands call, so
//! the API and the CLI share every lock and can be used at the same time.

mod error;
mod routes;
mod token;

use crate::engine::Choice;
use crate::recipe::settings::Settings;
use crate::support::error::WithHint;
use crate::support::output;
use anyhow::{Context, Result};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use error::ApiError;
use std::net::SocketAddr;
use std::sync::Arc;
use utoipa::OpenApi;

pub use token::token_file;

/// What every request shares.
pub struct App {
    token: String,
    /// `--host`, as the CLI's.
    host: Option<String>,
}

impl App {
    fn engine_choice(&self, settings: Option<&Settings>) -> Choice {
        crate::instance::engine_choice(self.host.clone(), settings)
    }
}

/// Serves on `listen` until Ctrl-C or SIGTERM; the address it listens on is
/// printed on stdout first (`--listen 127.0.0.1:0` picks a free port).
pub async fn serve(listen: SocketAddr, host: Option<String>) -> Result<()> {
    let token = token::load_or_create()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))
        .hint("pick another address or port with `--listen`")?;
    let address = listener.local_addr()?;
    if !address.ip().is_loopback() {
        output::warn(format!(
            "listening on {address}, which is not loopback: whoever reaches it with the token controls every instance of this user"
        ));
    }
    output::data(format!("http://{address}/"));
    output::note(format!(
        "the token is in `{}`; every /v1 request needs `Authorization: Bearer <token>`",
        token_file()?.display()
    ));
    let app = router(Arc::new(App { token, host }));
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped())
        .await
        .context("the server failed")
}

async fn stopped() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    output::note("stopping the server");
}

fn router(app: Arc<App>) -> Router {
    let v1 = Router::new()
        .route(
            "/v1/instances",
            get(routes::list_instances).post(routes::create_instance),
        )
        .route(
            "/v1/instances/{name}",
            get(routes::get_instance).delete(routes::delete_instance),
        )
        .route("/v1/instances/{name}/start", post(routes::start_instance))
        .route("/v1/instances/{name}/stop", post(routes::stop_instance))
        .route("/v1/instances/{name}/logs", get(routes::logs))
        .route("/v1/instances/{name}/stats", get(routes::stats))
        .route(
            "/v1/instances/{name}/snapshots",
            get(routes::list_snapshots).post(routes::create_snapshot),
        )
        .route(
            "/v1/instances/{name}/snapshots/{snapshot}/restore",
            post(routes::restore_snapshot),
        )
        .route_layer(middleware::from_fn_with_state(app.clone(), authorized));
    Router::new()
        .route("/", get(dashboard))
        .route("/health", get(routes::health))
        .route("/openapi.json", get(openapi))
        .merge(v1)
        .fallback(routes::unknown_path)
        .with_state(app)
}

/// Lets a request through only with the token.
async fn authorized(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match given {
        Some(given) if token::matches(&app.token, given.trim()) => next.run(request).await,
        Some(_) => unauthorized("the token is wrong"),
        None => unauthorized("no token: send `Authorization: Bearer <token>`"),
    }
}

fn unauthorized(why: &str) -> Response {
    let hint = match token_file() {
        Ok(path) => format!(
            "the token is in `{}`, readable by the user who runs `devinst serve`",
            path.display()
        ),
        Err(_) => "the token is in `api-token` in devinst's data directory".to_owned(),
    };
    ApiError::new(StatusCode::UNAUTHORIZED, why, Some(hint)).into_response()
}

/// The page: one file in the binary, no build step. It loads nothing from
/// elsewhere, and the browser is told to keep it that way.
async fn dashboard() -> impl IntoResponse {
    let policy = "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                  frame-ancestors 'none'";
    (
        [(header::CONTENT_SECURITY_POLICY, policy)],
        Html(include_str!("../../templates/dashboard.html")),
    )
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[derive(OpenApi)]
#[openapi(
    info(title = "devinst", description = "Every git worktree's container dev instance, over HTTP: `devinst serve`."),
    paths(
        routes::health,
        routes::list_instances,
        routes::create_instance,
        routes::get_instance,
        routes::start_instance,
        routes::stop_instance,
        routes::delete_instance,
        routes::logs,
        routes::stats,
        routes::list_snapshots,
        routes::create_snapshot,
        routes::restore_snapshot,
    ),
    modifiers(&BearerToken)
)]
struct ApiDoc;

/// The `token` security scheme the paths name.
struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
