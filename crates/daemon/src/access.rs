//! Why a file cannot be read, in words an ops engineer can act on: for a permission problem, which
//! user this process runs as and the command that lets it read. A leaf: it imports nothing of the
//! crate and reads nothing but who it runs as.

use std::path::Path;

/// Why a file cannot be read, and for a permission problem, who needs to read it and how.
pub fn unreadable(path: &Path, e: &std::io::Error) -> String {
    if e.kind() != std::io::ErrorKind::PermissionDenied {
        return format!("{}: cannot read: {e}", path.display());
    }
    let uid = nix::unistd::geteuid();
    let user = nix::unistd::User::from_uid(uid).ok().flatten().map(|u| u.name).unwrap_or_else(|| uid.to_string());
    let group =
        nix::unistd::Group::from_gid(nix::unistd::getegid()).ok().flatten().map(|g| g.name).unwrap_or(user.clone());
    format!(
        "{p}: cannot read: {e}; this process runs as user `{user}`: make the file (and its directories) readable \
         by it, e.g. `chgrp {group} {p} && chmod 0640 {p}`",
        p = path.display()
    )
}
