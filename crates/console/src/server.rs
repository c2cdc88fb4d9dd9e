//! The console's HTTP server (axum): its routes, the login and logout, and the headers every answer
//! carries. Reading a page needs a session; every write also needs the session's CSRF token and a
//! same-origin request (a cross-site POST is refused before anything else). It must not render
//! HTML itself (`pages`, `overview`) nor write anything but through the rule files.

use std::sync::Arc;

use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::gate::{refuse, session, writer};
use crate::sessions::COOKIE;
use crate::state::Console;
use crate::{editing, history, overview, pages, teams, trying, ConsoleError};

/// Serve the console on `console.listen` until `shutdown`.
pub async fn serve(console: Arc<Console>, shutdown: CancellationToken) -> Result<(), ConsoleError> {
    let addr = console.cfg.console.listen;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ConsoleError::Listen { addr, source })?;
    serve_on(console, listener, shutdown).await
}

/// Serve the console on a socket already bound (a test's, on port 0) until `shutdown`.
pub async fn serve_on(
    console: Arc<Console>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ConsoleError> {
    let scheme = if console.tls.is_some() { "https" } else { "http" };
    if let Ok(bound) = listener.local_addr() {
        tracing::info!(address = %format!("{scheme}://{bound}/"), "console listening");
    }
    match console.tls.clone() {
        None => axum::serve(listener, app(console))
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await
            .map_err(ConsoleError::Serve),
        Some(acceptor) => {
            let tls = crate::tls::listen(listener, acceptor, shutdown.clone()).map_err(ConsoleError::Serve)?;
            axum::serve(tls, app(console))
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
                .map_err(ConsoleError::Serve)
        }
    }
}

/// The console's routes over `console`.
pub fn app(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/overview", get(overview_section))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/pipelines", get(editing::page))
        .route("/pipelines/move", post(editing::move_rule))
        .route("/pipelines/block", post(editing::set_block))
        .route("/pipelines/rule", post(editing::add_or_remove_rule))
        .route("/pipelines/check", post(editing::check_block))
        .route("/draft/save", post(editing::save_draft))
        .route("/draft/discard", post(editing::discard))
        .route("/try", get(trying::page))
        .route("/try/report", get(trying::report_section))
        .route("/teams", get(teams::page))
        .route("/teams/member", post(teams::set_member))
        .route("/history", get(history::page))
        .route("/history/revert", post(history::revert))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .layer(middleware::from_fn(same_origin_writes))
        .layer(middleware::from_fn(headers))
        .with_state(console)
}

async fn home(State(c): State<Arc<Console>>, h: HeaderMap) -> Response {
    let Some((_, s)) = session(&c, &h) else { return Redirect::to("/login").into_response() };
    let body = match c.report().await {
        Ok(r) => overview::section(&r, c.author(&r).as_deref()),
        Err(e) => maud::html! { p.problem role="alert" { "Cannot read the router's state: " (e) } },
    };
    Html(pages::page("Overview", Some(&s), maud::html! { h1 { "Overview" } (body) }).into_string()).into_response()
}

async fn overview_section(State(c): State<Arc<Console>>, h: HeaderMap) -> Response {
    if session(&c, &h).is_none() {
        return refuse(StatusCode::UNAUTHORIZED, "Not logged in", "Log in to see the overview.");
    }
    match c.report().await {
        Ok(r) => Html(overview::section(&r, c.author(&r).as_deref()).into_string()).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("cannot read the router's state: {e}")).into_response(),
    }
}

async fn login_page() -> Response {
    Html(pages::login(None).into_string()).into_response()
}

#[derive(serde::Deserialize)]
struct LoginForm {
    name: String,
    password: String,
}

async fn login(State(c): State<Arc<Console>>, Form(f): Form<LoginForm>) -> Response {
    if let Some(wait) = c.throttle.wait(&f.name) {
        tracing::warn!(user = %f.name, "console login held back: too many failures");
        let why = format!("Too many failed logins for this name: try again in {} minute(s).", wait.as_secs() / 60 + 1);
        return (StatusCode::TOO_MANY_REQUESTS, Html(pages::login(Some(&why)).into_string())).into_response();
    }
    let Some(role) = c.accounts.verify(&f.name, &f.password) else {
        c.throttle.failed(&f.name);
        tracing::warn!(user = %f.name, "console login refused");
        let page = pages::login(Some("Wrong name or password."));
        return (StatusCode::UNAUTHORIZED, Html(page.into_string())).into_response();
    };
    c.throttle.succeeded(&f.name);
    tracing::info!(user = %f.name, role = role.as_str(), "console login");
    let token = c.sessions.open(&f.name, role);
    let secure = if c.tls.is_some() { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}");
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(serde::Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn logout(State(c): State<Arc<Console>>, h: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    match writer(&c, &h, f.csrf.as_deref()) {
        Ok((token, s)) => {
            c.sessions.close(&token);
            tracing::info!(user = %s.user, "console logout");
            let mut r = Redirect::to("/login").into_response();
            r.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_static("oppty_console=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
            );
            r
        }
        Err(r) => r,
    }
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../assets/console.css")).into_response()
}

async fn js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../assets/console.js")).into_response()
}

/// A write (any method but GET and HEAD) must come from the console's own pages: a browser says
/// where a request comes from (`Origin`, `Sec-Fetch-Site`), and anything from another site is
/// refused before it reaches a handler.
async fn same_origin_writes(req: Request<axum::body::Body>, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) || same_origin(req.headers()) {
        return next.run(req).await;
    }
    tracing::warn!(method = %req.method(), path = %req.uri().path(), "cross-site request refused");
    refuse(StatusCode::FORBIDDEN, "Refused", "A request from another site was refused; nothing was changed.")
}

fn same_origin(h: &HeaderMap) -> bool {
    let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    match (text("origin"), text("host")) {
        (Some(origin), Some(host)) => {
            origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host)
        }
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// What every answer carries: nothing from elsewhere may run, frame or be sent; nothing cached.
async fn headers(req: Request<axum::body::Body>, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    let set = |h: &mut HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    );
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "same-origin");
    set(h, "x-frame-options", "DENY");
    set(h, "cache-control", "no-store");
    r
}
