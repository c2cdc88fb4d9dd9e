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

#[test]
fn the_committed_json_schema_is_the_generated_one() {
    let committed = include_str!("../config/rules.schema.json");
    assert!(
        committed == oppty_router::rules::json_schema(),
        "config/rules.schema.json is stale: run `cargo run -- schema > config/rules.schema.json` and commit it"
    );
}

#[test]
fn the_example_rule_files_validate_against_the_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../config/rules.schema.json")).expect("schema is JSON");
    let validator = jsonschema::JSONSchema::compile(&schema).expect("a valid JSON Schema");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules");
    let mut checked = 0;
    for e in std::fs::read_dir(&dir).expect("rules dir") {
        let p = e.expect("entry").path();
        let text = std::fs::read_to_string(&p).expect("read");
        let value: serde_json::Value = match p.extension().and_then(|e| e.to_str()) {
            Some("json") => serde_json::from_str(&text).expect("json"),
            Some("toml") => serde_json::to_value(toml::from_str::<toml::Value>(&text).expect("toml")).expect("as json"),
            _ => continue,
        };
        if let Err(errors) = validator.validate(&value) {
            let msgs: Vec<String> = errors.map(|e| format!("{} at {}", e, e.instance_path)).collect();
            panic!("{} does not validate: {msgs:?}", p.display());
        }
        checked += 1;
    }
    assert!(checked >= 5, "every example file checked ({checked})");
    // And the schema does catch a mistake an editor should underline.
    let bad = serde_json::json!({ "member": [{ "id": "1", "max_opn": 3 }] });
    assert!(!validator.is_valid(&bad), "an unknown key is flagged by the schema");
}
