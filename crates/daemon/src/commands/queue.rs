//! The admin's one-shot changes to the queue: `requeue` and `unpause` (the work is `admin`'s).

use super::{connect, CommandError, Invocation};
use crate::admin;

pub async fn requeue(
    inv: &Invocation,
    unassigned: bool,
    dead_letter: bool,
    since: Option<chrono::DateTime<chrono::Utc>>,
    ids: Option<&[String]>,
) -> Result<(), CommandError> {
    let (cfg, client) = connect(inv, " requeue").await?;
    // The ids as the router stores them (blanks trimmed, a uuid in its canonical form).
    let ids = match ids {
        Some(given) => Some(crate::crm::stored_ids(&client, &cfg, given).await.map_err(|e| CommandError::db(e, &cfg))?),
        None => None,
    };
    let mut matched = std::collections::HashSet::new();
    if unassigned {
        let done = admin::requeue(&client, &cfg, admin::Requeue::Unassigned, since, ids.as_deref())
            .await
            .map_err(|e| CommandError::db(e, &cfg))?;
        say!("queued {} unassigned opportunities again", done.len());
        matched.extend(done);
    }
    if dead_letter {
        let done = admin::requeue(&client, &cfg, admin::Requeue::DeadLetters, since, ids.as_deref())
            .await
            .map_err(|e| CommandError::db(e, &cfg))?;
        say!("moved {} dead-lettered events back into the queue", done.len());
        matched.extend(done);
    }
    let Some(ids) = ids else { return Ok(()) };
    let what = match (unassigned, dead_letter) {
        (true, true) => "neither unassigned nor dead-lettered",
        (true, false) => "not unassigned (owned, held, or already queued)",
        _ => "not dead-lettered",
    };
    let missed: Vec<&String> = ids.iter().filter(|i| !matched.contains(*i)).collect();
    for id in &missed {
        eprintln!("--id {id}: matched nothing: {what} (`oppty-router explain {id}` says what happened to it)");
    }
    if !ids.is_empty() && missed.len() == ids.len() {
        return Err(CommandError::Failure("no --id matched anything to requeue".into()));
    }
    Ok(())
}

pub async fn unpause(inv: &Invocation, member: &str, by: Option<String>) -> Result<(), CommandError> {
    let (cfg, client) = connect(inv, " unpause").await?;
    let by = by.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "admin".into());
    if admin::unpause(&client, &cfg, member, &by).await.map_err(|e| CommandError::db(e, &cfg))? {
        say!("{member}: pause lifted by {by}; the daemon gives them work again from its next sweep");
        Ok(())
    } else {
        Err(CommandError::Failure(format!("{member}: not paused for lapses (see `oppty-router status`)")))
    }
}
