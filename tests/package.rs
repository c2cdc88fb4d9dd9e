//! Ops install the Debian package: `cargo deb` builds it, and what it holds is checked with
//! dpkg-deb (files, owners and modes, conffiles, the control file, the maintainer scripts), then
//! it is unpacked by dpkg into a throwaway root and its binary run from there.

use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{cmd:?}: {e} (`cargo xtask needs` lists what the tests need; `cargo xtask test` installs it)")
    });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cargo deb` into `dir`: the .deb's path. Needs cargo-deb (`cargo xtask test` installs it).
fn build(dir: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let version = Command::new(&cargo).args(["deb", "--version"]).output();
    assert!(
        version.is_ok_and(|o| o.status.success()),
        "cargo-deb is missing: `cargo install cargo-deb --locked` (`cargo xtask test` does)"
    );
    run(Command::new(&cargo).current_dir(ROOT).args(["deb", "--locked", "--output"]).arg(dir));
    std::fs::read_dir(dir)
        .expect("output dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("a .deb was written")
}

/// `dpkg-deb -c`: path → (mode string, owner/group).
fn contents(deb: &Path) -> Vec<(String, String, String)> {
    run(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let path = f.get(5)?.trim_start_matches('.').to_string();
            Some((path, f[0].to_string(), f[1].to_string()))
        })
        .collect()
}

fn entry<'a>(files: &'a [(String, String, String)], path: &str) -> &'a (String, String, String) {
    files.iter().find(|f| f.0 == path).unwrap_or_else(|| panic!("{path} is not in the package: {files:#?}"))
}

#[test]
fn the_package_installs_a_stripped_binary_the_unit_the_config_and_rules_as_conffiles_docs_man_pages_and_the_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let deb = build(dir.path());
    let files = contents(&deb);

    assert_eq!(entry(&files, "/usr/bin/oppty-router").1, "-rwxr-xr-x");
    assert_eq!(entry(&files, "/etc/oppty-router/oppty-router.toml").1, "-rw-r-----");
    for rule in std::fs::read_dir(Path::new(ROOT).join("config/rules")).expect("rules") {
        let name = rule.expect("entry").file_name().to_string_lossy().to_string();
        assert_eq!(entry(&files, &format!("/etc/oppty-router/rules/{name}")).1, "-rw-r-----", "{name}");
    }
    let unit = entry(&files, "/usr/lib/systemd/system/oppty-router.service");
    assert_eq!(unit.1, "-rw-r--r--");
    assert_eq!(entry(&files, "/usr/lib/systemd/system/oppty-router-console.service").1, "-rw-r--r--");
    let unit_text = std::fs::read_to_string(Path::new(ROOT).join("systemd/oppty-router.service")).expect("unit");
    let docs = unit_text.lines().find_map(|l| l.strip_prefix("Documentation=file://")).expect("Documentation=");
    entry(&files, docs);
    assert!(unit_text.contains("ExecStart=/usr/bin/oppty-router "), "the unit runs the packaged binary");
    for path in [
        "/usr/share/doc/oppty-router/ARCHITECTURE.md",
        "/usr/share/doc/oppty-router/rules.md",
        "/usr/share/man/man1/oppty-router.1.gz",
        "/usr/share/man/man1/oppty-router-simulate.1.gz",
        "/usr/share/bash-completion/completions/oppty-router",
        "/usr/share/zsh/vendor-completions/_oppty-router",
        "/usr/share/oppty-router/rules.schema.json",
    ] {
        entry(&files, path);
    }
    assert!(
        files.iter().all(|f| f.2 == "0/0" || f.2 == "root/root"),
        "files are root's in the archive; postinst gives /etc to the service group: {files:#?}"
    );

    let info = run(Command::new("dpkg-deb").arg("-I").arg(&deb));
    for field in ["Package: oppty-router", "Depends:", "adduser", "postinst", "postrm", "conffiles"] {
        assert!(info.contains(field), "`{field}` missing from the control information:\n{info}");
    }
    let control = dir.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).expect("conffiles");
    assert!(conffiles.contains("/etc/oppty-router/oppty-router.toml"), "{conffiles}");
    assert!(
        conffiles.contains("/etc/oppty-router/rules/10-retail.toml"),
        "an admin's rule edits survive upgrades: {conffiles}"
    );
    let postinst = std::fs::read_to_string(control.join("postinst")).expect("postinst");
    assert!(postinst.contains("adduser --system") && postinst.contains("chown root:oppty-router"), "{postinst}");
    assert!(postinst.contains("daemon-reload"), "the unit is made known to systemd: {postinst}");
    assert!(
        !postinst.contains("systemctl start") && !postinst.contains("deb-systemd-invoke start"),
        "never started before ops configure it (an upgrade restarts it only if it runs): {postinst}"
    );

    unpack_and_run(&deb, dir.path());
}

/// dpkg unpacks the package into a throwaway root (no maintainer scripts run: they would change
/// this machine), and the binary runs from there, stripped of its debug information.
fn unpack_and_run(deb: &Path, dir: &Path) {
    let root = dir.join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(d)).expect("dpkg dirs");
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").expect("status");
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-not-root", "--force-depends", "--unpack"])
        .arg(deb));
    let status = run(Command::new("dpkg").arg(format!("--root={}", root.display())).args(["-s", "oppty-router"]));
    assert!(status.contains("Status: install ok unpacked"), "{status}");
    let bin = root.join("usr/bin/oppty-router");
    let version = run(Command::new(&bin).arg("--version"));
    assert!(version.starts_with("oppty-router "), "{version}");
    let sections = run(Command::new("readelf").args(["-S", "--wide"]).arg(&bin));
    for gone in [" .debug_info ", " .symtab "] {
        assert!(!sections.contains(gone), "the packaged binary is stripped: it has{gone}\n{sections}");
    }
    let size = std::fs::metadata(&bin).expect("binary").len();
    assert!(size < 40 << 20, "stripped, it is small: {size} bytes");
    // Conffiles wait beside their place until dpkg configures the package (then they keep an
    // admin's edits across upgrades).
    assert!(root.join("etc/oppty-router/rules/01-people.toml.dpkg-new").is_file(), "the rules are unpacked");
    assert!(root.join("usr/lib/systemd/system/oppty-router.service").is_file(), "the unit is unpacked");
}

/// The maintainer script `postinst configure <old version>` run on a throwaway /etc: dpkg's file
/// list and the service user are stood in for (`dpkg-query`, `getent`), and `chown`/`chgrp`
/// record what they would give the service group (it need not exist here). Returns that record.
fn postinst_on(etc: &Path, bin: &Path, packaged: &[PathBuf], old_version: &str) -> String {
    let log = bin.join("given.log");
    let list: String = packaged.iter().map(|p| format!("{}\n", p.display())).collect();
    let fakes = [
        ("dpkg-query", format!("#!/bin/sh\nprintf '%s' '{list}'\n")),
        ("getent", "#!/bin/sh\nexit 0\n".to_string()),
        ("chgrp", format!("#!/bin/sh\necho \"chgrp $*\" >> {}\n", log.display())),
        ("chown", format!("#!/bin/sh\necho \"chown $*\" >> {}\n", log.display())),
        ("install", format!("#!/bin/sh\necho \"install $*\" >> {}\n", log.display())),
    ];
    for (name, text) in fakes {
        std::fs::write(bin.join(name), text).expect("fake");
        run(Command::new("chmod").arg("755").arg(bin.join(name)));
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    run(Command::new("sh")
        .arg(Path::new(ROOT).join("debian/postinst"))
        .args(["configure", old_version])
        .env("PATH", path)
        .env("OPPTY_ROUTER_ETC", etc));
    std::fs::read_to_string(&log).unwrap_or_default()
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

#[test]
fn an_upgrade_gives_the_service_the_packages_files_and_never_widens_a_file_an_admin_narrowed() {
    use std::os::unix::fs::PermissionsExt;
    assert!(nix::unistd::geteuid().is_root(), "this test checks files owned by root:root and must run as root");
    let dir = tempfile::tempdir().expect("tempdir");
    let (etc, bin) = (dir.path().join("etc/oppty-router"), dir.path().join("bin"));
    std::fs::create_dir_all(etc.join("rules")).expect("mkdir");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let file = |name: &str, mode: u32| {
        let p = etc.join(name);
        std::fs::write(&p, "x").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p
    };
    // As dpkg unpacks the package's files; one an admin narrowed; one an admin added.
    let config = file("oppty-router.toml", 0o640);
    let rules = file("rules/10-retail.toml", 0o640);
    let narrowed = file("rules/20-corporate.toml", 0o600);
    let password = file("db-password", 0o600);
    let packaged = [config.clone(), rules.clone(), narrowed.clone(), dir.path().join("usr/bin/oppty-router")];

    let given = postinst_on(&etc, &bin, &packaged, "0.1.0");
    assert!(given.contains(&format!("chgrp oppty-router {}", config.display())), "{given}");
    assert!(given.contains(&format!("chgrp oppty-router {}", rules.display())), "{given}");
    assert!(!given.contains("20-corporate") && !given.contains("db-password"), "left as the admin set them: {given}");
    assert!(!given.contains("chown"), "an upgrade leaves the directories as they are: {given}");
    let journal =
        format!("install -o oppty-router -g oppty-router -m 0640 /dev/null {}/console-journal.jsonl", etc.display());
    assert!(given.contains(&journal), "the console's journal, the service's to append to: {given}");
    assert_eq!((mode(&narrowed), mode(&password)), (0o600, 0o600), "nothing is widened");

    std::fs::remove_file(bin.join("given.log")).ok();
    std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let given = postinst_on(&etc, &bin, &packaged, "");
    assert!(given.contains(&format!("chown root:oppty-router {} {}/rules", etc.display(), etc.display())), "{given}");
    assert_eq!(mode(&etc), 0o750, "the first install closes the directory to others");
    assert_eq!(mode(&etc.join("rules")), 0o770, "the console (the service group) may save the rule files");
    assert_eq!((mode(&narrowed), mode(&password)), (0o600, 0o600), "nothing is widened");
}
