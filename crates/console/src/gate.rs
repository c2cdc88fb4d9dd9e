//! Who may call what: the session a request's cookie names (a page needs one), a write's CSRF
//! token, an editor's role; a refusal as a small page. It must not serve or change anything.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::accounts::Role;
use crate::pages;
use crate::sessions::{same_secret, token_of, Session};
use crate::state::Console;

/// The session a request's cookie names, if any.
pub(crate) fn session(c: &Console, h: &HeaderMap) -> Option<(String, Session)> {
    let cookie = h.get(header::COOKIE)?.to_str().ok()?;
    let token = token_of(cookie)?;
    c.sessions.get(token).map(|s| (token.to_string(), s))
}

/// A write's session: logged in (401 otherwise) and carrying the session's CSRF token (403).
pub(crate) fn writer(c: &Console, h: &HeaderMap, csrf: Option<&str>) -> Result<(String, Session), Response> {
    let Some((token, s)) = session(c, h) else {
        return Err(refuse(StatusCode::UNAUTHORIZED, "Not logged in", "Log in first; nothing was changed."));
    };
    let sent = csrf.or_else(|| h.get("x-csrf-token").and_then(|v| v.to_str().ok()));
    if !sent.is_some_and(|t| same_secret(t, &s.csrf)) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "Refused",
            "This form is out of date or came from elsewhere; reload the page and try again. Nothing was changed.",
        ));
    }
    Ok((token, s))
}

pub(crate) fn refuse(status: StatusCode, title: &str, why: &str) -> Response {
    (status, Html(pages::refusal(title, why).into_string())).into_response()
}

/// A write by an editor: a viewer is refused (403) before anything is read.
pub(crate) fn editor(c: &Console, h: &HeaderMap, csrf: Option<&str>) -> Result<Session, Response> {
    let (_, s) = writer(c, h, csrf)?;
    if s.role != Role::Editor {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "Viewers cannot change the rules",
            "Your account can see the rules but not change them; ask an editor. Nothing was changed.",
        ));
    }
    Ok(s)
}
