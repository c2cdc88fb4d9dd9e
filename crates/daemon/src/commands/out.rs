//! What a command prints on stdout: a closed pipe (`explain … | head`) ends it quietly (exit 0).
//! Files a command writes are written whole or not at all. It must not format reports (their
//! modules do) nor decide exit codes (`error` does).

use crate::exit;

/// Print a line on stdout; a closed pipe (`explain … | head`) ends the command quietly (exit 0).
macro_rules! say {
    () => { $crate::commands::out::out(format_args!(""), true) };
    ($($t:tt)*) => { $crate::commands::out::out(format_args!($($t)*), true) };
}

/// [`say!`] without the newline.
macro_rules! say_raw {
    ($($t:tt)*) => { $crate::commands::out::out(format_args!($($t)*), false) };
}

pub fn out(args: std::fmt::Arguments<'_>, newline: bool) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let written = o.write_fmt(args).and_then(|()| if newline { o.write_all(b"\n") } else { Ok(()) });
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(exit::OK);
        }
    }
}

/// A file written whole or not at all: a temporary file beside it, renamed over it.
pub fn write_whole(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
