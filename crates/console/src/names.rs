//! The names a block may use, from the rules as they compile (files and CRM merged): teams,
//! members, territories, products, tags, and the fields the daemon config maps. Shown above the
//! blocks, so an admin picks a name rather than remembers it. It must not read anything: it is given the compiled rules and the field names.

use maud::{html, Markup};
use oppty_router::engine::Engine;

/// The names, grouped, each group sorted.
pub fn section(e: &Engine, fields: &[String]) -> Markup {
    let mut teams: Vec<String> = e.teams.iter().map(|t| format!("{} ({})", t.id, t.name)).collect();
    let mut members: Vec<String> = e.members.iter().map(|m| format!("{} ({})", m.id, m.name)).collect();
    let mut territories: Vec<String> = e.territories.written.clone();
    let by_symbol: std::collections::HashMap<u32, &str> = e.symbols.iter().map(|(k, v)| (*v, k.as_str())).collect();
    let mut products: Vec<String> = e
        .members
        .iter()
        .flat_map(|m| m.products.iter())
        .filter_map(|p| by_symbol.get(p))
        .map(|p| p.to_uppercase())
        .collect();
    let mut tags: Vec<String> = e.tag_rules.iter().map(|t| t.tag.clone()).collect();
    let mut fields = fields.to_vec();
    for list in [&mut teams, &mut members, &mut territories, &mut products, &mut tags, &mut fields] {
        list.sort();
        list.dedup();
    }
    html! {
        details.names {
            summary { "Names you can use in a block" }
            dl {
                (group("Teams", &teams))
                (group("Members", &members))
                (group("Territories", &territories))
                (group("Products", &products))
                (group("Tags", &tags))
                (group("Fields (the daemon config's mapping)", &fields))
            }
        }
    }
}

fn group(title: &str, names: &[String]) -> Markup {
    html! {
        dt { (title) }
        dd { @if names.is_empty() { "none" } @else { @for (i, n) in names.iter().enumerate() { @if i > 0 { ", " } code { (n) } } } }
    }
}
