//! The synthetic bank shared by the benchmarks.
#![allow(dead_code)]

use std::fmt::Write as _;

use rand::rngs::SmallRng;
use rand::RngExt;

/// The fields the synthetic bank's rules test, in mapping order.
pub const FIELDS: &[&str] =
    &["ward", "district", "province", "score", "segment", "product", "source", "last_owner", "language"];

/// The synthetic bank as one JSON rule file.
pub fn bank(rng: &mut SmallRng) -> String {
    let (provinces, districts, wards) = (63usize, 700usize, 10_000usize);
    let products = ["HOME", "AUTO", "CARD", "SAVE", "TRADE", "CASH", "FX", "INS"];
    let segments = ["mass", "affluent", "priority", "sme", "corporate"];
    let mut s = String::from("{\"settings\":{\"fallback_owner\":\"admin\"},\"territory\":[{\"id\":\"VN\"}");
    for p in 0..provinces {
        let _ = write!(s, ",{{\"id\":\"P{p}\",\"parent\":\"VN\"}}");
    }
    for d in 0..districts {
        let _ = write!(s, ",{{\"id\":\"D{d}\",\"parent\":\"P{}\"}}", d % provinces);
    }
    for w in 0..wards {
        let _ = write!(s, ",{{\"id\":\"W{w}\",\"parent\":\"D{}\"}}", w % districts);
    }
    s.push_str("],\"schedule\":[{\"id\":\"office\",\"timezone\":\"Asia/Ho_Chi_Minh\",\"week\":{\"mon-sat\":\"07:00-20:00\"}}],\"member\":[");
    for m in 0..10_000 {
        let prods: Vec<String> =
            (0..3).map(|_| format!("\"{}\"", products[rng.random_range(0..products.len())])).collect();
        let _ = write!(
            s,
            "{}{{\"id\":\"u{m}\",\"max_open\":{},\"caps\":[{{\"max\":40,\"per\":\"24h\"}}],\"weight\":{},\"kpi\":{},\"products\":[{}],\"tags\":[\"{}\"],\"attributes\":{{\"language\":\"{}\"}}{}{}}}",
            if m == 0 { "" } else { "," },
            rng.random_range(20..60),
            rng.random_range(1..4),
            rng.random_range(50..100),
            prods.join(","),
            ["instagram", "vip", "web"][m % 3],
            ["vi", "en"][m % 2],
            if m % 7 == 0 { ",\"paused\":true" } else { "" },
            if m % 5 == 0 { ",\"schedule\":\"office\"" } else { "" },
        );
    }
    s.push_str("],\"team\":[");
    for t in 0..500 {
        let members: Vec<String> = (0..20).map(|i| format!("\"u{}\"", t * 20 + i)).collect();
        // Each team covers a province (the first 63), or a few districts.
        let terr: Vec<String> = if t < provinces {
            vec![format!("\"P{t}\"")]
        } else {
            (0..3).map(|i| format!("\"D{}\"", (t * 3 + i) % districts)).collect()
        };
        let pipelines: Vec<String> = (0..3).map(|i| format!("\"pl{}\"", (t + i * 7) % 30)).collect();
        let _ = write!(
            s,
            "{}{{\"id\":\"team{t}\",\"crm_id\":\"{t}\",\"pipelines\":[{}],\"territories\":[{}],\"tags\":[\"{}\"],\"members\":[{}]}}",
            if t == 0 { "" } else { "," },
            pipelines.join(","),
            terr.join(","),
            ["instagram", "vip", "web"][t % 3],
            members.join(",")
        );
    }
    s.push_str("],\"tag\":[{\"name\":\"instagram\",\"when\":{\"field\":\"source\",\"equals\":\"instagram\"}},{\"name\":\"vip\",\"when\":{\"field\":\"score\",\"at_least\":180}}],\"pipeline\":[");
    let picks = ["\"fewest_open\"", "\"round_robin\"", "\"weighted_round_robin\"", "\"best_kpi\"", "\"random\""];
    for p in 0..30 {
        let _ =
            write!(s, "{}{{\"id\":\"pl{p}\",\"fallback_owner\":\"admin\",\"rule\":[", if p == 0 { "" } else { "," });
        for r in 0..34 {
            let n = p * 34 + r;
            if n >= 1000 {
                break;
            }
            let when = match r % 4 {
                0 => format!("{{\"field\":\"segment\",\"equals\":\"{}\"}}", segments[r % segments.len()]),
                1 => format!("{{\"field\":\"score\",\"between\":[{},{}]}}", r * 5, r * 5 + 60),
                2 => format!("{{\"all\":[{{\"field\":\"product\",\"in\":[\"{}\",\"{}\"]}},{{\"not\":{{\"field\":\"source\",\"equals\":\"web\"}}}}]}}", products[r % 8], products[(r + 3) % 8]),
                _ => "{\"tagged\":\"vip\"}".to_string(),
            };
            let team = match r % 5 {
                0..=2 => "{\"territory\":[\"ward\",\"district\",\"province\"]}".to_string(),
                3 => "{\"tags\":\"any\"}".to_string(),
                _ => format!(
                    "{{\"id\":\"team{}\"}}",
                    (0..500).find(|t| (0..3).any(|i| (t + i * 7) % 30 == p)).unwrap_or(0)
                ),
            };
            let filters = match r % 3 {
                0 => "[{\"products\":\"product\",\"if_nobody\":\"skip_filter\"}]",
                1 => "[{\"attribute\":\"language\",\"equals_field\":\"language\",\"if_nobody\":\"skip_filter\"}]",
                _ => "[]",
            };
            let member = if r % 11 == 0 {
                "{\"pick\":\"owner\",\"fields\":[\"last_owner\"],\"otherwise\":\"fewest_open\"}".to_string()
            } else {
                picks[r % picks.len()].to_string()
            };
            let _ = write!(
                s,
                "{}{{\"id\":\"r{n}\",\"when\":{when},\"team\":{team},\"filters\":{filters},\"member\":{member},\"when_full\":\"next_rule\"}}",
                if r == 0 { "" } else { "," }
            );
        }
        // A catch-all last rule: the territory team, fewest open.
        let _ = write!(s, ",{{\"id\":\"catch-all-{p}\",\"team\":{{\"territory\":[\"ward\",\"district\",\"province\"]}},\"member\":\"fewest_open\"}}");
        s.push_str("]}");
    }
    s.push_str("]}");
    s
}
