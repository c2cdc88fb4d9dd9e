//! The console's pages as HTML, built with maud, so every value (a member's name from the CRM, a
//! rule file's text, an error message) is escaped by construction. It must not read anything: each
//! page is given what it shows.

use maud::{html, Markup, DOCTYPE};

use crate::sessions::Session;

/// A whole page: the head (the console's own stylesheet and script, nothing from the network), the
/// navigation, and `body`.
pub fn page(title: &str, who: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · oppty-router console" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                header {
                    a.brand href="/" { "oppty-router" }
                    @if let Some(s) = who {
                        nav aria-label="Sections" {
                            a href="/" { "Overview" }
                            a href="/pipelines" { "Pipelines" }
                            a href="/teams" { "Teams" }
                            a href="/try" { "Try" }
                            a href="/history" { "History" }
                        }
                        form.who method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            span { (s.user) " (" (s.role.as_str()) ")" }
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main id="main" { (body) }
            }
        }
    }
}

/// The login form, with what went wrong last time, if anything.
pub fn login(problem: Option<&str>) -> Markup {
    page(
        "Log in",
        None,
        html! {
            h1 { "Log in" }
            @if let Some(p) = problem {
                p.problem role="alert" { (p) }
            }
            form.login method="post" action="/login" {
                label { "Name" input name="name" autocomplete="username" required autofocus; }
                label { "Password" input name="password" type="password" autocomplete="current-password" required; }
                button type="submit" { "Log in" }
            }
        },
    )
}

/// A refusal as a small page (401, 403, 404): what was refused and what to do.
pub fn refusal(title: &str, why: &str) -> Markup {
    page(title, None, html! { h1 { (title) } p.problem role="alert" { (why) } p { a href="/login" { "Log in" } } })
}
