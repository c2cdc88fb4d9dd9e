//! The documents users read stay true: the README's config example is the shipped one, and the
//! shipped examples load.

use std::path::Path;

#[test]
fn the_readme_embeds_the_shipped_example_config_verbatim() {
    let readme = include_str!("../README.md");
    let example = include_str!("../config/oppty-router.toml");
    assert!(
        readme.contains(&format!("```toml\n{example}```")),
        "README.md's config example differs from config/oppty-router.toml: copy it again"
    );
}

#[test]
fn the_shipped_example_config_and_rules_load() {
    let cfg = oppty_router::config::Config::parse(
        include_str!("../config/oppty-router.toml"),
        Path::new("config/oppty-router.toml"),
    )
    .expect("the example config is valid");
    let mut cfg = cfg;
    cfg.router.rules_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules");
    let engine = oppty_router::load_rules(&cfg).expect("the example rules compile against the example mapping");
    assert!(engine.pipelines.contains_key("retail") && engine.pipelines.contains_key("corporate"));
}
