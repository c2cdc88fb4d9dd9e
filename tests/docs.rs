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

/// The README's two commands are the ones CI runs: what passes in CI is what a new user runs.
#[test]
fn the_readmes_two_commands_are_what_ci_runs() {
    let readme = include_str!("../README.md");
    let block = readme
        .split("## Two commands")
        .nth(1)
        .and_then(|s| s.split("```sh\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("README.md has a sh block under \"## Two commands\"");
    let commands: Vec<&str> =
        block.lines().map(|l| l.split('#').next().unwrap_or_default().trim()).filter(|c| !c.is_empty()).collect();
    assert_eq!(commands, ["cargo run --release -- demo", "cargo xtask test"], "README.md's two commands");
    let ci = include_str!("../.ci/run");
    let ran: Vec<&str> = ci.lines().map(str::trim).filter(|l| l.starts_with("cargo ")).collect();
    assert!(ran.contains(&"cargo xtask setup"), ".ci/run installs with the README's set-up: {ran:?}");
    assert_eq!(ran.last(), Some(&"cargo xtask test --locked"), ".ci/run ends with the README's test command");
    assert!(ran.iter().any(|c| c.starts_with("cargo run --locked -q -- demo")), ".ci/run runs the demo: {ran:?}");
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
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
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
        let msgs: Vec<String> =
            validator.iter_errors(&value).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(msgs.is_empty(), "{} does not validate: {msgs:?}", p.display());
        checked += 1;
    }
    assert!(checked >= 5, "every example file checked ({checked})");
    // And the schema does catch a mistake an editor should underline.
    let bad = serde_json::json!({ "member": [{ "id": "1", "max_opn": 3 }] });
    assert!(!validator.is_valid(&bad), "an unknown key is flagged by the schema");
}

/// Every policy word of a rule file is listed in the schema (editors complete it and underline a
/// misspelling), and the daemon names the key, the position and the words to use.
#[test]
fn the_schema_lists_every_policy_word_and_the_daemon_refuses_a_misspelt_one_precisely() {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../config/rules.schema.json")).expect("schema is JSON");
    let words = |def: &str| -> Vec<String> {
        schema["$defs"][def]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("definition {def} lists its words"))
            .iter()
            .map(|w| w.as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(words("WhenFull"), ["next_rule", "fallback", "ignore_caps", "hold"]);
    assert_eq!(words("WhenAway"), ["next_rule", "wait"]);
    assert_eq!(words("IfNobody"), ["next_rule", "skip_filter"]);
    assert_eq!(words("AnyAll"), ["any", "all"]);
    assert_eq!(words("Exclude"), ["previous", "all_previous"]);
    assert_eq!(words("Interaction"), ["owner", "anyone", "owner_edits"]);
    assert_eq!(words("PickName"), ["random", "fewest_open", "round_robin", "weighted_round_robin", "best_kpi"]);
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let rule = |when_full: &str| serde_json::json!({ "pipeline": [{ "id": "p", "rule": [{ "id": "r", "member": "random", "when_full": when_full }] }] });
    assert!(validator.is_valid(&rule("hold")), "a right word validates");
    assert!(!validator.is_valid(&rule("hodl")), "a misspelt word is underlined by an editor");
    let text = "[[member]]\nid = \"a\"\n[[team]]\nid = \"t\"\nmembers = [\"a\"]\npipelines = [\"p\"]\n\
                [[pipeline]]\nid = \"p\"\n[[pipeline.rule]]\nid = \"r\"\nmember = \"random\"\nwhen_full = \"hodl\"\n";
    let err = match oppty_router::rules::compile_texts(&[("r.toml", text)], &[]) {
        Ok(_) => panic!("a misspelt policy is refused"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        err,
        "r.toml:12:13: pipeline `p`.rule `r`.when_full: `hodl` is not a policy; use \"next_rule\", \"fallback\", \"ignore_caps\" or \"hold\""
    );
}

#[test]
fn the_committed_man_pages_and_shell_completions_are_the_generated_ones() {
    let bin = env!("CARGO_BIN_EXE_oppty-router");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let fix = "run `cargo run -- manpage --dir docs/man` and `cargo run -- completions SHELL > docs/completions/oppty-router.SHELL` (bash, zsh, fish), and commit them";
    let dir = tempfile::tempdir().expect("tempdir");
    let ok = std::process::Command::new(bin).args(["manpage", "--dir"]).arg(dir.path()).status().expect("run");
    assert!(ok.success());
    let names = |d: &std::path::Path| {
        let mut n: Vec<String> = std::fs::read_dir(d)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(dir.path()), names(&root.join("docs/man")), "docs/man is stale: {fix}");
    for name in names(dir.path()) {
        let made = std::fs::read_to_string(dir.path().join(&name)).expect("generated");
        let committed = std::fs::read_to_string(root.join("docs/man").join(&name)).expect("committed");
        assert!(made == committed, "docs/man/{name} is stale: {fix}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let out = std::process::Command::new(bin).args(["completions", shell]).output().expect("run");
        let committed = std::fs::read(root.join(format!("docs/completions/oppty-router.{shell}"))).expect("committed");
        assert!(
            out.status.success() && out.stdout == committed,
            "docs/completions/oppty-router.{shell} is stale: {fix}"
        );
    }
}
