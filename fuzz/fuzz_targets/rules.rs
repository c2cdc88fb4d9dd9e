//! Any bytes as a TOML and as a JSON rule file, next to the shipped examples: compiled or refused
//! with a message, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

const SETTINGS: &str = include_str!("../../config/rules/00-settings.toml");
const PEOPLE: &str = include_str!("../../config/rules/01-people.toml");

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let fields: Vec<String> = ["province", "score", "source", "segment", "product"].iter().map(|s| s.to_string()).collect();
    for name in ["50-fuzz.toml", "50-fuzz.json"] {
        let files = [("00-settings.toml", SETTINGS), ("01-people.toml", PEOPLE), (name, text)];
        if let Err(e) = oppty_router::rules::compile_texts(&files, &fields) {
            assert!(!e.to_string().is_empty());
        }
    }
});
