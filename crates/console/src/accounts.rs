//! The console's accounts: a TOML file of names, roles and argon2 password hashes (never a
//! password), written by `oppty-router console user add` and read when the console starts. It
//! must not serve anything, nor keep a password longer than it takes to hash or check it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;

/// What an account may do: look (viewer), or also save and revert rules (editor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Viewer,
    Editor,
}

impl Role {
    pub const WORDS: &'static [&'static str] = &["viewer", "editor"];

    pub fn parse(word: &str) -> Option<Role> {
        match word {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
        }
    }

    pub fn can_edit(self) -> bool {
        self == Role::Editor
    }
}

/// The shortest password `user add` takes.
pub const MIN_PASSWORD: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("{path}: {why}")]
    Unreadable { path: String, why: String },
    #[error("{path}: {why}")]
    Invalid { path: String, why: String },
    #[error(
        "{path}: no console account yet; add one with `oppty-router console user add NAME --role editor` \
         (it asks for the password)"
    )]
    NoAccount { path: String },
    #[error("{0}")]
    Refused(String),
    #[error("{path}: cannot write the accounts: {why}")]
    Write { path: String, why: String },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    user: Vec<RawUser>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    role: String,
    password: String,
}

struct Account {
    name: String,
    role: Role,
    hash: String,
}

/// The accounts as the file holds them, checked.
pub struct Accounts {
    accounts: Vec<Account>,
    /// Checked when a name is unknown, so an unknown name costs what a wrong password does.
    decoy: String,
}

impl Accounts {
    /// Read and check the accounts file; an absent or empty one is refused with the command that
    /// adds the first account.
    pub fn load(path: &Path) -> Result<Accounts, AccountsError> {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AccountsError::NoAccount { path: shown });
            }
            Err(e) => return Err(AccountsError::Unreadable { path: shown, why: e.to_string() }),
        };
        let raw: RawFile = toml::from_str(&text)
            .map_err(|e| AccountsError::Invalid { path: shown.clone(), why: e.to_string().trim().to_string() })?;
        let mut accounts = Vec::new();
        for (i, u) in raw.user.into_iter().enumerate() {
            let at = format!("user[{i}]");
            check_name(&u.name)
                .map_err(|why| AccountsError::Invalid { path: shown.clone(), why: format!("{at}.name: {why}") })?;
            let role = Role::parse(&u.role).ok_or_else(|| AccountsError::Invalid {
                path: shown.clone(),
                why: format!("{at}.role: `{}` is not a role; use one of {}", u.role, Role::WORDS.join(", ")),
            })?;
            PasswordHash::new(&u.password).map_err(|e| AccountsError::Invalid {
                path: shown.clone(),
                why: format!(
                    "{at}.password: not an argon2 hash ({e}); set it with `oppty-router console user add {}`",
                    u.name
                ),
            })?;
            if accounts.iter().any(|a: &Account| a.name == u.name) {
                return Err(AccountsError::Invalid {
                    path: shown,
                    why: format!("{at}.name: `{}` is listed twice", u.name),
                });
            }
            accounts.push(Account { name: u.name, role, hash: u.password });
        }
        if accounts.is_empty() {
            return Err(AccountsError::NoAccount { path: shown });
        }
        Ok(Accounts { accounts, decoy: hash("a decoy nobody can log in with")? })
    }

    /// The role of `name` when `password` is theirs.
    pub fn verify(&self, name: &str, password: &str) -> Option<Role> {
        let account = self.accounts.iter().find(|a| a.name == name);
        let hash = account.map_or(self.decoy.as_str(), |a| a.hash.as_str());
        let parsed = PasswordHash::new(hash).ok()?;
        let ok = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
        account.filter(|_| ok).map(|a| a.role)
    }
}

/// A name an account may have: what a person types, nothing that needs escaping anywhere.
fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` is not a name: 1 to 64 letters, digits, `.`, `_`, `-` or `@`"))
    }
}

fn hash(password: &str) -> Result<String, AccountsError> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    PasswordHasher::<PasswordHash>::hash_password_with_salt(&Argon2::default(), password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountsError::Refused(format!("cannot hash the password: {e}")))
}

/// Add `name` with `role` and `password` to the accounts file (or change theirs), keeping every
/// other line of the file as it was; the file is replaced whole, readable by its owner only.
pub fn add_user(path: &Path, name: &str, role: Role, password: &str) -> Result<(), AccountsError> {
    check_name(name).map_err(AccountsError::Refused)?;
    if password.chars().count() < MIN_PASSWORD {
        return Err(AccountsError::Refused(format!("the password is too short: at least {MIN_PASSWORD} characters")));
    }
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HEADER.to_string(),
        Err(e) => return Err(AccountsError::Unreadable { path: shown, why: e.to_string() }),
    };
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| AccountsError::Invalid { path: shown.clone(), why: e.to_string() })?;
    let entry = {
        let mut t = toml_edit::Table::new();
        t["name"] = toml_edit::value(name);
        t["role"] = toml_edit::value(role.as_str());
        t["password"] = toml_edit::value(hash(password)?);
        t
    };
    let users = doc
        .entry("user")
        .or_insert(toml_edit::Item::ArrayOfTables(toml_edit::ArrayOfTables::new()))
        .as_array_of_tables_mut()
        .ok_or_else(|| AccountsError::Invalid {
            path: shown.clone(),
            why: "`user` is not a list of [[user]] tables".into(),
        })?;
    let found = users.iter().position(|t| t.get("name").and_then(|v| v.as_str()) == Some(name));
    match found {
        Some(i) => {
            if let Some(t) = users.get_mut(i) {
                *t = entry;
            }
        }
        None => users.push(entry),
    }
    write_private(path, &doc.to_string()).map_err(|why| AccountsError::Write { path: shown, why })
}

const HEADER: &str = "# oppty-router console accounts: names, roles (viewer, editor) and argon2 password hashes.\n\
# Written by `oppty-router console user add NAME --role editor`; never holds a password.\n";

/// Write `text` to `path` through a temporary file beside it (mode 0600), renamed over it.
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    let written =
        owned_as_before(&f, path, &dir).and_then(|()| f.write_all(text.as_bytes())).and_then(|()| f.sync_all());
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.to_string());
    }
    Ok(())
}

/// The accounts file keeps its owner, group and mode when written again. A new one is the
/// writer's, 0600 — unless root writes it (`sudo … console user add`) in a directory of a group
/// other than root's: then it takes that group (`/etc/oppty-router` is root:oppty-router), mode
/// 0640, so the console, which runs in that group, can read it and nobody else can.
fn owned_as_before(f: &std::fs::File, path: &Path, dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    if let Ok(meta) = std::fs::metadata(path) {
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::fchown(f, Some(meta.uid()), Some(meta.gid()))?;
        }
        return f.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o777));
    }
    let group = std::fs::metadata(dir)?.gid();
    if nix::unistd::geteuid().is_root() && group != 0 {
        std::os::unix::fs::fchown(f, Some(0), Some(group))?;
        return f.set_permissions(std::fs::Permissions::from_mode(0o640));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_writing_a_new_accounts_file_gives_it_the_directorys_group_and_rewriting_keeps_its_owner() {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        assert!(nix::unistd::geteuid().is_root(), "this test checks ownership root gives away, and must run as root");
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::chown(dir.path(), Some(0), Some(4242)).expect("the directory's group");
        let path = dir.path().join("console-users.toml");
        add_user(&path, "lan", Role::Editor, "correct horse battery").expect("added");
        let meta = std::fs::metadata(&path).expect("stat");
        assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o777), (0, 4242, 0o640), "the service group may read it");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("an admin narrows it");
        std::os::unix::fs::chown(&path, Some(0), Some(4343)).expect("and regroups it");
        add_user(&path, "minh", Role::Viewer, "another long secret").expect("added");
        let meta = std::fs::metadata(&path).expect("stat");
        assert_eq!((meta.gid(), meta.mode() & 0o777), (4343, 0o600), "as the admin left it");
    }

    #[test]
    fn an_added_user_logs_in_with_their_password_only_and_the_file_holds_no_password() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users.toml");
        add_user(&path, "lan", Role::Editor, "correct horse battery").expect("add lan");
        add_user(&path, "minh", Role::Viewer, "another long secret").expect("add minh");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("correct horse") && text.contains("$argon2"), "{text}");
        let accounts = Accounts::load(&path).expect("load");
        assert_eq!(accounts.verify("lan", "correct horse battery"), Some(Role::Editor));
        assert_eq!(accounts.verify("minh", "another long secret"), Some(Role::Viewer));
        assert_eq!(accounts.verify("lan", "another long secret"), None, "another's password");
        assert_eq!(accounts.verify("nobody", "correct horse battery"), None, "an unknown name");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "readable by its owner only");
    }

    #[test]
    fn adding_a_user_again_changes_their_role_and_password_and_keeps_the_admins_comments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users.toml");
        add_user(&path, "lan", Role::Viewer, "first password").expect("add");
        let with_note = std::fs::read_to_string(&path).expect("read") + "# Lan runs sales ops in Hanoi\n";
        std::fs::write(&path, with_note).expect("note");
        add_user(&path, "lan", Role::Editor, "second password").expect("again");
        let accounts = Accounts::load(&path).expect("load");
        assert_eq!(accounts.verify("lan", "second password"), Some(Role::Editor));
        assert_eq!(accounts.verify("lan", "first password"), None);
        assert!(std::fs::read_to_string(&path).expect("read").contains("# Lan runs sales ops in Hanoi"));
    }

    #[test]
    fn a_bad_accounts_file_is_refused_naming_the_file_and_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users.toml");
        let missing = Accounts::load(&path).err().expect("missing").to_string();
        assert!(missing.contains("console user add"), "{missing}");
        std::fs::write(&path, "[[user]]\nname = \"lan\"\nrole = \"admin\"\npassword = \"x\"\n").expect("write");
        let bad = Accounts::load(&path).err().expect("bad role").to_string();
        assert!(bad.contains("user[0].role: `admin` is not a role; use one of viewer, editor"), "{bad}");
        let short = add_user(&path, "lan", Role::Editor, "short").expect_err("short").to_string();
        assert!(short.contains("at least 10 characters"), "{short}");
        let name = add_user(&path, "<script>", Role::Editor, "long enough password").expect_err("name").to_string();
        assert!(name.contains("is not a name"), "{name}");
    }
}
