//! Each editor's draft: the rule files as they were on disk when the editor began changing them,
//! the files as the draft has them now, and each change in the admin's words. A change is applied
//! to the file's own text (`rules::edit`), so untouched lines stay as written. It must not write a
//! file (`save` does) nor judge a change (the caller compiles the draft as `check` would).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What one editor has changed and not yet saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// The rule files as they were on disk when the draft began (path, text): a save checks that
    /// nobody changed them since.
    pub base: Vec<(PathBuf, String)>,
    /// The rule files as the draft has them.
    pub files: Vec<(PathBuf, String)>,
    /// Each change, in the admin's words, oldest first.
    pub changes: Vec<String>,
}

impl Draft {
    /// A draft of the files as they are.
    pub fn of(files: Vec<(PathBuf, String)>) -> Draft {
        Draft { base: files.clone(), files, changes: Vec::new() }
    }

    /// The files whose text the draft changed.
    pub fn changed(&self) -> Vec<&(PathBuf, String)> {
        self.files.iter().filter(|f| !self.base.contains(f)).collect()
    }

    /// Move rule `rule` of pipeline `pipeline` to position `to` (0-based) among the rules its
    /// file gives that pipeline.
    pub fn move_rule(&mut self, pipeline: &str, rule: &str, to: usize) -> Result<(), String> {
        let outline = rules::outline::outline(&self.files);
        let Some(p) = outline.pipelines.iter().find(|p| p.id == pipeline && p.rules.iter().any(|r| r.id == rule))
        else {
            return Err(format!(
                "no rule `{rule}` in pipeline `{pipeline}`: reload the page, the files may have changed"
            ));
        };
        let from = p.rules.iter().position(|r| r.id == rule).unwrap_or(0);
        if from == to.min(p.rules.len().saturating_sub(1)) {
            return Ok(());
        }
        let file = p.file.clone();
        self.edit_file(&file, |text, json| rules::edit::move_rule(text, json, pipeline, rule, to))?;
        self.changes.push(format!("pipeline {pipeline}: rule {rule} moved from position {} to {}", from + 1, to + 1));
        Ok(())
    }

    /// Add rule `rule` at the end of pipeline `pipeline` (in the file that defines it), starting
    /// with a member block to edit.
    pub fn add_rule(&mut self, pipeline: &str, rule: &str) -> Result<(), String> {
        let file = self.pipeline_file(pipeline)?;
        self.edit_file(&file, |text, json| rules::edit::add_rule(text, json, pipeline, rule.trim()))?;
        self.changes.push(format!("pipeline {pipeline}: rule {} added", rule.trim()));
        Ok(())
    }

    /// Remove rule `rule` of pipeline `pipeline`.
    pub fn remove_rule(&mut self, pipeline: &str, rule: &str) -> Result<(), String> {
        let file = self.pipeline_file(pipeline)?;
        self.edit_file(&file, |text, json| rules::edit::remove_rule(text, json, pipeline, rule))?;
        self.changes.push(format!("pipeline {pipeline}: rule {rule} removed"));
        Ok(())
    }

    /// The file that defines pipeline `pipeline`.
    fn pipeline_file(&self, pipeline: &str) -> Result<std::path::PathBuf, String> {
        rules::outline::outline(&self.files)
            .pipelines
            .into_iter()
            .find(|p| p.id == pipeline)
            .map(|p| p.file)
            .ok_or_else(|| format!("no pipeline `{pipeline}`: reload the page, the files may have changed"))
    }

    /// Replace `file`'s text by `edit`'s (given the text and whether it is JSON); whether the
    /// text changed.
    fn edit_file(
        &mut self,
        file: &std::path::Path,
        edit: impl FnOnce(&str, bool) -> Result<String, String>,
    ) -> Result<bool, String> {
        let Some(entry) = self.files.iter_mut().find(|(path, _)| path == file) else {
            return Err(format!("{}: not among the draft's files", file.display()));
        };
        let json = file.extension().is_some_and(|e| e == "json");
        let text = edit(&entry.1, json).map_err(|e| format!("{}: {e}", file.display()))?;
        let changed = text != entry.1;
        entry.1 = text;
        Ok(changed)
    }

    /// Set member key `key` (`paused`, `max_open`) of member `member` to `value`, or remove it:
    /// in the file that lists the member, else (a member only the CRM lists) in a new
    /// `[[member]]` of the first TOML file that lists members.
    pub fn set_member(&mut self, member: &str, key: &str, value: Option<&str>) -> Result<(), String> {
        let mut changed = None;
        for (i, (path, text)) in self.files.iter().enumerate() {
            let json = path.extension().is_some_and(|e| e == "json");
            match rules::edit::set_member(text, json, member, key, value, false) {
                Ok(new) if new != *text => {
                    changed = Some((i, new));
                    break;
                }
                Ok(_) => {}
                Err(e) if e.starts_with("no member") => {}
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
        if changed.is_none() && value.is_some() {
            let toml =
                |(_, (p, _)): &(usize, &(std::path::PathBuf, String))| p.extension().is_some_and(|e| e == "toml");
            let people = self.files.iter().enumerate().filter(toml).find(|(_, (_, t))| t.contains("[[member]]"));
            let Some((i, (path, text))) = people.or_else(|| self.files.iter().enumerate().find(toml)) else {
                return Err("no TOML rule file to add the member to".into());
            };
            let new = rules::edit::set_member(text, false, member, key, value, true)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            changed = Some((i, new));
        }
        let Some((i, new)) = changed else { return Ok(()) };
        self.files[i].1 = new;
        self.changes.push(match (key, value) {
            ("paused", Some("true")) => format!("member {member}: paused"),
            ("paused", _) => format!("member {member}: pause lifted"),
            (k, Some(v)) => format!("member {member}: {k} = {v}"),
            (k, None) => format!("member {member}: {k} removed"),
        });
        Ok(())
    }

    /// Set block `key` of rule `rule` to `value` (the file's own syntax), or remove it.
    pub fn set_block(&mut self, pipeline: &str, rule: &str, key: &str, value: Option<&str>) -> Result<(), String> {
        let (file, had) = {
            let outline = rules::outline::outline(&self.files);
            let r = outline
                .pipelines
                .iter()
                .filter(|p| p.id == pipeline)
                .find_map(|p| p.rules.iter().find(|r| r.id == rule).map(|r| (p.file.clone(), r.clone())));
            let Some((file, r)) = r else {
                return Err(format!(
                    "no rule `{rule}` in pipeline `{pipeline}`: reload the page, the files may have changed"
                ));
            };
            (file, r.blocks.iter().find(|b| b.key == key).map(|b| b.text.clone()))
        };
        if !self.edit_file(&file, |text, json| rules::edit::set_block(text, json, pipeline, rule, key, value))? {
            return Ok(());
        }
        let one_line = |v: &str| v.split_whitespace().collect::<Vec<_>>().join(" ");
        self.changes.push(match (had, value) {
            (Some(_), None) => format!("pipeline {pipeline}: rule {rule}: {key} removed"),
            (Some(_), Some(v)) => format!("pipeline {pipeline}: rule {rule}: {key} = {}", one_line(v)),
            (None, v) => format!("pipeline {pipeline}: rule {rule}: {key} = {} added", one_line(v.unwrap_or(""))),
        });
        Ok(())
    }
}

/// The drafts of this console process, one per editor (kept across their sessions).
#[derive(Default)]
pub struct Drafts {
    map: Mutex<HashMap<String, Draft>>,
}

impl Drafts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Draft>> {
        oppty_router::held::held(&self.map)
    }

    /// `user`'s draft, if they have begun one.
    pub fn get(&self, user: &str) -> Option<Draft> {
        self.lock().get(user).cloned()
    }

    /// Change `user`'s draft (begun from the files in `dir` when they have none); a change that
    /// fails leaves the draft as it was.
    pub fn change(
        &self,
        user: &str,
        dir: &Path,
        f: impl FnOnce(&mut Draft) -> Result<(), String>,
    ) -> Result<Draft, String> {
        let mut map = self.lock();
        let mut draft = match map.get(user) {
            Some(d) => d.clone(),
            None => Draft::of(rules::read_files(dir).map_err(|e| e.to_string())?),
        };
        f(&mut draft)?;
        map.insert(user.to_string(), draft.clone());
        Ok(draft)
    }

    /// Drop `user`'s draft (discarded, or saved).
    pub fn drop_draft(&self, user: &str) {
        self.lock().remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Vec<(PathBuf, String)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/rules");
        rules::read_files(&dir).expect("the example rules")
    }

    #[test]
    fn a_moved_rule_changes_its_file_alone_and_says_so_and_moving_it_back_is_the_original() {
        let mut d = Draft::of(example());
        let outline = rules::outline::outline(&d.files);
        let p = outline.pipelines.iter().find(|p| p.rules.len() >= 2).expect("a pipeline with two rules");
        let (first, second) = (p.rules[0].id.clone(), p.rules[1].id.clone());
        d.move_rule(&p.id, &second, 0).expect("moved");
        assert_eq!(d.changed().len(), 1, "one file changed");
        assert_eq!(d.changed()[0].0, p.file);
        let now = rules::outline::outline(&d.files);
        let moved = now.pipelines.iter().find(|q| q.id == p.id).expect("the pipeline");
        assert_eq!((moved.rules[0].id.as_str(), moved.rules[1].id.as_str()), (second.as_str(), first.as_str()));
        assert_eq!(d.changes, vec![format!("pipeline {}: rule {second} moved from position 2 to 1", p.id)]);
        d.move_rule(&p.id, &second, 1).expect("moved back");
        assert!(d.changed().is_empty(), "back as it was, byte for byte");
    }

    #[test]
    fn a_block_set_then_removed_is_said_in_words_and_a_bad_value_changes_nothing() {
        let mut d = Draft::of(example());
        d.set_block("retail", "province-team", "when_full", Some("\"fallback\"")).expect("same value: no change");
        assert!(d.changes.is_empty() && d.changed().is_empty(), "{:?}", d.changes);
        d.set_block("retail", "province-team", "member", Some("\"round_robin\"")).expect("set");
        d.set_block("retail", "province-team", "when_full", None).expect("removed");
        assert_eq!(
            d.changes,
            vec![
                "pipeline retail: rule province-team: member = \"round_robin\"".to_string(),
                "pipeline retail: rule province-team: when_full removed".to_string()
            ]
        );
        let before = d.clone();
        let e = d.set_block("retail", "province-team", "team", Some("{ territory = ")).expect_err("not a value");
        assert!(e.contains("10-retail.toml: not a TOML value"), "{e}");
        assert_eq!(d, before, "a refused change leaves the draft as it was");
    }

    #[test]
    fn a_member_is_paused_where_the_files_list_them_and_a_crm_only_member_where_members_are_listed() {
        let mut d = Draft::of(example());
        d.set_member("102", "paused", Some("true")).expect("pause");
        d.set_member("7777", "max_open", Some("5")).expect("a CRM-only member");
        let people = d.changed();
        assert_eq!(people.len(), 1, "both in the people file");
        assert!(people[0].0.ends_with("01-people.toml"));
        assert!(
            people[0].1.contains("tags = [\"instagram\"]\nterritories = [\"HN\"]\npaused = true\n"),
            "{}",
            people[0].1
        );
        assert!(people[0].1.ends_with("[[member]]\nid = \"7777\"\nmax_open = 5\n"), "{}", people[0].1);
        assert_eq!(d.changes, vec!["member 102: paused".to_string(), "member 7777: max_open = 5".to_string()]);
        d.set_member("102", "paused", None).expect("lift");
        d.set_member("7777", "max_open", None).expect("lift");
        assert!(d.changed()[0].1.ends_with("[[member]]\nid = \"7777\"\n"), "the added member stays, its cap gone");
    }

    #[test]
    fn a_rule_added_then_removed_leaves_the_files_as_they_were_and_says_both() {
        let mut d = Draft::of(example());
        d.add_rule("retail", "vip-first").expect("added");
        let outline = rules::outline::outline(&d.files);
        let retail = outline.pipelines.iter().find(|p| p.id == "retail").expect("retail");
        assert_eq!(retail.rules.last().map(|r| r.id.as_str()), Some("vip-first"));
        d.remove_rule("retail", "vip-first").expect("removed");
        assert!(d.changed().is_empty(), "as it was");
        assert_eq!(
            d.changes,
            vec![
                "pipeline retail: rule vip-first added".to_string(),
                "pipeline retail: rule vip-first removed".to_string()
            ]
        );
    }

    #[test]
    fn a_move_of_what_is_not_there_is_refused_and_the_draft_is_as_before() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/rules");
        let drafts = Drafts::default();
        let err = drafts.change("lan", &dir, |d| d.move_rule("no-such-pipeline", "r", 0)).expect_err("refused");
        assert!(err.contains("no rule `r` in pipeline `no-such-pipeline`"), "{err}");
        assert_eq!(drafts.get("lan"), None, "no draft begun by a refused change");
        // Moving a rule to where it is already is no change.
        let outline = rules::outline::outline(&example());
        let p = &outline.pipelines[0];
        let d = drafts.change("lan", &dir, |d| d.move_rule(&p.id, &p.rules[0].id, 0)).expect("no-op");
        assert!(d.changed().is_empty() && d.changes.is_empty());
    }
}
