//! The web console (`oppty-router console`): an admin sees what is in force and why, tries a change
//! and saves it, in one place. It reads the database as `status`, `report` and `simulate` do, and it
//! changes routing only by writing the rule files, which the daemon reloads as it does any save: a
//! hand edit and a console edit are the same thing.
//!
//! Owns the console's HTTP server, its pages, its accounts and sessions. It must not write the
//! CRM's rows or the router's tables, nor decide anything about routing (the daemon, the engine and
//! the rules' compiler do); every value it shows is escaped by construction (maud).

pub mod accounts;
pub mod commands;
mod drafts;
mod editing;
mod error;
mod gate;
mod history;
mod names;
mod overview;
mod pages;
mod pipelines;
mod save;
mod server;
mod sessions;
mod state;
mod teams;
mod throttle;
mod tls;
mod trying;

pub use error::ConsoleError;
pub use server::{app, serve, serve_on};
pub use state::Console;
