//! Any text as an ops-written statement with `:name` parameters, and as identifiers and table
//! names from the daemon config: bound or refused, parsed or refused; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let names = ["id", "owner", "team", "old_owner"];
    if let Ok((_, used)) = oppty_router::crm::bind_named(text, &names) {
        assert!(used.iter().all(|i| *i < names.len()));
    }
    if let Ok(id) = oppty_router::ident::Ident::parse(text) {
        assert_eq!(oppty_router::ident::Ident::parse(&id.quoted()).ok(), Some(id));
    }
    let _ = oppty_router::ident::TableName::parse(text);
});
