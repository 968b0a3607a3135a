//! What an operator installs, checked against the real binary so that none
//! of it can drift from the code: `cachet.example.toml` (every `cachet
//! serve` setting, read by the real loader), the systemd unit (hardening,
//! a command line the binary accepts, `systemd-analyze verify`), the
//! Containerfile's invariants and its HEALTHCHECK probe, shell completions,
//! the manual page and `cachet --version`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use cachet_server::ServeArgs;

/// The repository root (where the distributed files live).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The real binary, with no `CACHET_*` variable of the caller's leaking in.
fn cachet_cmd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cachet"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CACHET_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn cachet(args: &[&str]) -> Output {
    cachet_cmd().args(args).output().expect("run cachet")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cachet-dist-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A running `cachet serve`, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `cachet serve ARGS` and wait for its first stdout line (the URL it
/// listens on: start-up is over); `Err` with its stderr if it exits instead.
fn serve(args: &[String], dir: &Path) -> Result<Server, String> {
    let log = dir.join("serve.log");
    let mut child =
        cachet_cmd().args(args).stdout(Stdio::piped()).stderr(std::fs::File::create(&log).unwrap()).spawn().expect("run cachet serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.split("http://127.0.0.1:").nth(1).and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok());
    match port {
        Some(port) => Ok(Server { child, port }),
        None => {
            let _ = child.kill();
            let status = child.wait().unwrap();
            Err(format!("{status}: stdout {line:?}, stderr: {}", std::fs::read_to_string(&log).unwrap_or_default()))
        }
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The long flags of `cachet serve --help`, without --help/--version.
fn serve_flags() -> BTreeSet<String> {
    let o = cachet(&["serve", "--help"]);
    assert!(o.status.success(), "{o:?}");
    let flags: BTreeSet<String> = stdout(&o)
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l.strip_prefix("-").and_then(|s| s.split_once(", ")).map_or(l, |(_, rest)| rest);
            let name = l.strip_prefix("--")?;
            Some(name.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).next()?.to_string())
        })
        .filter(|f| f != "help" && f != "version")
        .collect();
    assert!(flags.len() > 30 && flags.contains("listen") && flags.contains("data-dir"), "{flags:?}");
    flags
}

// ---------------------------------------------------------------- the example configuration

/// `key = value` settings of the example: (key, line) for live lines and
/// for `# key = value` lines (settings shown commented out).
fn example_settings(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let key_of = |l: &str| -> Option<String> {
        let (k, _) = l.split_once(" = ")?;
        (!k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')).then(|| k.to_string())
    };
    let mut live = BTreeSet::new();
    let mut commented = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            commented.extend(key_of(rest));
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            live.insert(key_of(line).unwrap_or_else(|| panic!("not a `key = value` line: {line:?}")));
        }
    }
    (live, commented)
}

/// The example with every `# key = value` line uncommented.
fn uncommented(text: &str) -> String {
    let (_, commented) = example_settings(text);
    text.lines()
        .map(|l| match l.strip_prefix("# ").filter(|rest| commented.iter().any(|k| rest.starts_with(&format!("{k} = ")))) {
            Some(rest) => rest.to_string(),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn example_config_is_read_by_the_real_loader_and_its_values_are_the_defaults() {
    let example = repo().join("cachet.example.toml");
    // As it stands the file changes nothing: its live values are the built-in defaults.
    let from_file = ServeArgs { config: Some(example.clone()), ..Default::default() }.resolve().expect("the example loads");
    let defaults = ServeArgs::default().resolve().unwrap();
    assert_eq!(format!("{from_file:?}"), format!("{defaults:?}"), "a live value in cachet.example.toml is not the built-in default");

    // Every commented-out example is a real key with a value of the right type.
    let dir = temp("example");
    let all = dir.join("all.toml");
    std::fs::write(&all, uncommented(&read("cachet.example.toml"))).unwrap();
    let c = ServeArgs { config: Some(all), ..Default::default() }.resolve().expect("the commented examples load");
    assert_eq!(c.issuer.as_deref(), Some("https://attest.example.com"));
    assert!(c.tls.is_some() && c.pkcs11.is_some() && c.database_url.is_some() && c.reference_values.is_some());
    assert_eq!(c.policy_signing_certs.len(), 1);
    assert_eq!(c.endorsement_rules.max_collateral_age, Some(7 * 86_400));

    // The real binary starts with it, and refuses a key it does not know (so it did read the file).
    let args = |config: &Path| {
        let mut a = strings(&["serve", "--listen", "127.0.0.1:0", "--offline", "--config"]);
        a.push(config.display().to_string());
        a.push("--data-dir".into());
        a.push(dir.join("data").display().to_string());
        a
    };
    let server = serve(&args(&example), &dir).expect("cachet serve --config cachet.example.toml starts");
    assert!(server.port > 0);
    drop(server);
    let typo = dir.join("typo.toml");
    std::fs::write(&typo, format!("{}\ntoken_tll = 60\n", read("cachet.example.toml"))).unwrap();
    let err = serve(&args(&typo), &dir).err().expect("an unknown key is refused");
    assert!(err.contains("token_tll"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn example_config_has_a_key_for_every_serve_flag_and_no_other() {
    let (live, commented) = example_settings(&read("cachet.example.toml"));
    assert!(live.is_disjoint(&commented), "a key both set and commented out: {:?}", live.intersection(&commented).collect::<Vec<_>>());
    let keys: BTreeSet<String> = live.union(&commented).cloned().collect();
    // The file names itself only on the command line; the repeatable
    // --policy-signing-cert is the list policy_signing_certs in the file.
    let expected: BTreeSet<String> = serve_flags()
        .into_iter()
        .filter(|f| f != "config")
        .map(|f| if f == "policy-signing-cert" { "policy_signing_certs".into() } else { f.replace('-', "_") })
        .collect();
    let missing: Vec<_> = expected.difference(&keys).collect();
    let extra: Vec<_> = keys.difference(&expected).collect();
    assert!(missing.is_empty(), "cachet.example.toml lacks these `cachet serve` settings: {missing:?}");
    assert!(extra.is_empty(), "cachet.example.toml has keys that are no `cachet serve` flag: {extra:?}");
}

// ---------------------------------------------------------------- systemd

/// `Key=value` lines of a unit file, each key with all its values in order.
fn unit_keys(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with('[') || line.is_empty() {
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("not a Key=value line: {line:?}"));
        keys.entry(k.to_string()).or_default().push(v.to_string());
    }
    keys
}

#[test]
fn systemd_unit_is_hardened() {
    let keys = unit_keys(&read("packaging/systemd/cachet.service"));
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("StateDirectory", "cachet"),
        ("StateDirectoryMode", "0700"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("SystemCallArchitectures", "native"),
        ("MemoryDenyWriteExecute", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("UMask", "0077"),
    ] {
        let values = keys.get(key).unwrap_or_else(|| panic!("cachet.service lacks {key}="));
        assert!(values.iter().any(|v| v == value), "cachet.service: {key}={values:?}, expected {key}={value}");
    }
    // A fixed account would undo DynamicUser=; a second line could loosen the first.
    for key in ["User", "Group"] {
        assert!(!keys.contains_key(key), "cachet.service: {key}= (the user is dynamic)");
    }
    for key in ["ProtectSystem", "NoNewPrivileges", "CapabilityBoundingSet", "RestrictAddressFamilies", "MemoryDenyWriteExecute"] {
        assert_eq!(keys[key].len(), 1, "cachet.service: {key}= more than once");
    }
    let nofile: u64 = keys["LimitNOFILE"][0].parse().expect("LimitNOFILE is a number");
    assert!(nofile > 1024 + 64, "LimitNOFILE={nofile} leaves no room for the default max_connections (1024)");
}

/// The unit's ExecStart, split into words.
fn exec_start() -> Vec<String> {
    let keys = unit_keys(&read("packaging/systemd/cachet.service"));
    let exec = keys.get("ExecStart").expect("ExecStart=");
    assert_eq!(exec.len(), 1, "one ExecStart");
    exec[0].split_whitespace().map(str::to_string).collect()
}

#[test]
fn systemd_unit_command_line_is_accepted_by_the_real_binary() {
    let words = exec_start();
    assert_eq!(&words[..2], ["/usr/bin/cachet", "serve"], "{words:?}");
    let flags = serve_flags();
    for w in &words[2..] {
        if let Some(flag) = w.strip_prefix("--") {
            assert!(flags.contains(flag), "ExecStart flag --{flag} is not in `cachet serve --help`");
        }
    }
    let at = |flag: &str| words.iter().position(|w| w == flag).map(|i| words[i + 1].as_str());
    assert_eq!(at("--data-dir"), Some("${STATE_DIRECTORY}"), "the data directory is the unit's StateDirectory");
    assert!(at("--config").is_some_and(|c| c.starts_with("/etc/cachet/")), "{words:?}");

    // The same command line, with the example as /etc/cachet/cachet.toml and a
    // temporary STATE_DIRECTORY, starts the real service.
    let dir = temp("unit");
    let mut args: Vec<String> = words[1..]
        .iter()
        .map(|w| match w.as_str() {
            "${STATE_DIRECTORY}" => dir.join("state").display().to_string(),
            c if c.starts_with("/etc/cachet/") => repo().join("cachet.example.toml").display().to_string(),
            other => other.to_string(),
        })
        .collect();
    args.extend(strings(&["--listen", "127.0.0.1:0", "--offline"]));
    let server = serve(&args, &dir).unwrap_or_else(|e| panic!("the unit's command line does not start: {e}"));
    assert!(dir.join("state/cachet.db").exists(), "the database is in the state directory");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        assert!(std::env::var_os("CI").is_none(), "systemd-analyze is needed under CI (apt-get install systemd)");
        eprintln!("skipped: systemd-analyze not installed");
        return;
    };
    assert!(version.status.success());
    let dir = temp("verify");
    // The binary where ExecStart names it, and the man pages Documentation= names.
    let unit = read("packaging/systemd/cachet.service").replace("/usr/bin/cachet", env!("CARGO_BIN_EXE_cachet"));
    std::fs::write(dir.join("cachet.service"), unit).unwrap();
    let man1 = dir.join("man/man1");
    std::fs::create_dir_all(&man1).unwrap();
    std::fs::write(man1.join("cachet.1"), cachet(&["man"]).stdout).unwrap();
    std::fs::write(man1.join("cachet-serve.1"), cachet(&["man", "serve"]).stdout).unwrap();
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=yes", "./cachet.service"])
        .current_dir(&dir)
        .env("MANPATH", dir.join("man"))
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {}\n{stderr}", o.status);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- container image

/// The Containerfile's instructions after its last FROM (the image), with
/// continuation lines joined: (INSTRUCTION, arguments).
fn image_instructions() -> Vec<(String, String)> {
    let text = read("Containerfile");
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        let (part, more) = match line.strip_suffix('\\') {
            Some(p) => (p, true),
            None => (line, false),
        };
        current.push_str(part.trim());
        current.push(' ');
        if !more {
            if !current.trim().is_empty() {
                joined.push(current.trim().to_string());
            }
            current.clear();
        }
    }
    let last_from = joined.iter().rposition(|l| l.starts_with("FROM ")).expect("a FROM");
    assert!(joined[..last_from].iter().any(|l| l.starts_with("FROM ") && l.ends_with(" AS builder")), "a builder stage");
    let build = joined.iter().find(|l| l.starts_with("RUN cargo build")).expect("the builder runs cargo build");
    assert!(build.contains("--release") && build.contains("--locked") && build.contains("-p cachet"), "{build}");
    assert!(build.contains("target/release/cachet"), "{build}");
    joined[last_from..]
        .iter()
        .map(|l| {
            let (i, rest) = l.split_once(' ').unwrap_or((l, ""));
            (i.to_string(), rest.trim().to_string())
        })
        .collect()
}

fn one(instructions: &[(String, String)], name: &str) -> String {
    let all: Vec<&String> = instructions.iter().filter(|(i, _)| i == name).map(|(_, a)| a).collect();
    assert_eq!(all.len(), 1, "the image has one {name}: {all:?}");
    all[0].clone()
}

/// The image's environment (ENV K=V ...).
fn image_env(instructions: &[(String, String)]) -> BTreeMap<String, String> {
    instructions
        .iter()
        .filter(|(i, _)| i == "ENV")
        .flat_map(|(_, a)| a.split_whitespace().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

#[test]
fn containerfile_image_is_non_root_with_a_volume_a_port_and_a_health_check() {
    let image = image_instructions();
    let default_port = cachet_server::config::DEFAULT_LISTEN.rsplit(':').next().unwrap();

    let user = one(&image, "USER");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "root" && uid.parse::<u32>().is_ok_and(|u| u != 0), "USER {user}: not root, and numeric");
    let volume = one(&image, "VOLUME");
    assert_eq!(volume, r#"["/var/lib/cachet"]"#);
    assert_eq!(one(&image, "EXPOSE"), default_port, "EXPOSE is serve's default port");
    let env = image_env(&image);
    assert_eq!(env.get("CACHET_LISTEN").map(String::as_str), Some(format!("0.0.0.0:{default_port}").as_str()));
    assert_eq!(env.get("CACHET_DATA_DIR").map(String::as_str), Some("/var/lib/cachet"), "the data is in the volume");
    let copy = image.iter().find(|(i, a)| i == "COPY" && a.starts_with("--from=builder")).expect("the binary comes from the builder");
    assert!(copy.1.ends_with("/cachet"), "{copy:?}");
    assert_eq!(one(&image, "ENTRYPOINT"), r#"["cachet"]"#);
    assert_eq!(one(&image, "CMD"), r#"["serve"]"#);
    // The files the image copies exist (a rename would break the build).
    for (_, a) in image.iter().filter(|(i, a)| i == "COPY" && !a.starts_with("--from")) {
        let src = a.split_whitespace().next().unwrap();
        assert!(repo().join(src).exists(), "COPY {src}: no such file");
    }
    let health = one(&image, "HEALTHCHECK");
    assert!(health.contains("/healthz"), "{health}");
}

#[test]
fn containerfile_health_check_probe_passes_against_real_serve_and_fails_without_it() {
    let image = image_instructions();
    let health = one(&image, "HEALTHCHECK");
    let cmd: Vec<String> = serde_json::from_str(health.split_once("CMD ").expect("HEALTHCHECK ... CMD [...]").1).expect("exec form");
    let dir = temp("health");
    let server = serve(&strings(&["serve", "--listen", "127.0.0.1:0", "--offline", "--data-dir", &dir.display().to_string()]), &dir)
        .expect("cachet serve starts");
    // As in the image: CACHET_LISTEN=0.0.0.0:PORT.
    let probe = |port: u16| Command::new(&cmd[0]).args(&cmd[1..]).env("CACHET_LISTEN", format!("0.0.0.0:{port}")).output().unwrap();
    let o = probe(server.port);
    assert!(o.status.success(), "the probe fails against a healthy service: {o:?}");
    let port = server.port;
    drop(server);
    let o = probe(port);
    assert!(!o.status.success(), "the probe passes with no service: {o:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn container_build_context_leaves_out_build_outputs_and_git() {
    let containerignore = read(".containerignore");
    assert_eq!(read(".dockerignore"), containerignore, "docker and podman read the same exclusions");
    let patterns: BTreeSet<&str> = containerignore.lines().filter(|l| !l.starts_with('#')).collect();
    for p in ["target/", ".git/", "cachet-data/"] {
        assert!(patterns.contains(p), "{p} is not excluded from the image build context");
    }
    for needed in ["Cargo.toml", "Cargo.lock", "crates/", "LICENSE", "cachet.example.toml"] {
        assert!(!patterns.iter().any(|p| p.trim_end_matches('/') == needed.trim_end_matches('/')), "{needed} is needed by the build");
    }
}

// ---------------------------------------------------------------- completions, man page, version

/// Subcommands every completion and the man page must name.
const SUBCOMMANDS: [&str; 6] = ["serve", "verify", "attest", "endorsements", "completions", "man"];

#[test]
fn bash_completion_is_valid_bash_and_completes_subcommands() {
    let o = cachet(&["completions", "bash"]);
    assert!(o.status.success(), "{o:?}");
    let dir = temp("bash");
    let script = dir.join("cachet.bash");
    std::fs::write(&script, &o.stdout).unwrap();
    let syntax = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(syntax.status.success(), "bash -n: {}", String::from_utf8_lossy(&syntax.stderr));
    // Complete `cachet se<TAB>` and `cachet serve --data<TAB>` with the script loaded.
    let complete = |words: &str| {
        let program = format!(
            "source {:?}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; _cachet cachet \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script
        );
        let o = Command::new("bash").arg("-c").arg(program).output().unwrap();
        assert!(o.status.success(), "{o:?}");
        stdout(&o)
    };
    let reply = complete("cachet se");
    assert!(reply.lines().any(|l| l.trim() == "serve") && reply.lines().any(|l| l.trim() == "secrets"), "{reply}");
    let reply = complete("cachet serve --data");
    assert!(reply.lines().any(|l| l.trim() == "--data-dir"), "{reply}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn zsh_and_fish_completions_name_the_subcommands() {
    for (shell, marker) in [("zsh", "#compdef cachet"), ("fish", "complete -c cachet")] {
        let o = cachet(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {o:?}");
        let text = stdout(&o);
        assert!(text.contains(marker), "{shell}: no {marker:?}");
        for sub in SUBCOMMANDS {
            assert!(text.contains(sub), "{shell} completion does not name {sub}");
        }
        assert!(text.contains("data-dir"), "{shell} completion lacks serve's flags");
    }
    let o = cachet(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2), "an unknown shell is a usage error: {o:?}");
}

#[test]
fn man_page_is_roff_with_the_subcommands_and_serve_has_its_own() {
    let o = cachet(&["man"]);
    assert!(o.status.success(), "{o:?}");
    let page = stdout(&o);
    let th = page.lines().find(|l| !l.starts_with(".ie") && !l.starts_with(".el") && !l.starts_with(".\\\"")).unwrap_or_default();
    assert!(th.starts_with(".TH cachet 1"), "the page starts with a .TH header: {th:?}");
    assert!(page.contains(env!("CARGO_PKG_VERSION")), "the version is in the header");
    let subcommands = page.split(".SH SUBCOMMANDS").nth(1).expect("a SUBCOMMANDS section");
    for sub in SUBCOMMANDS {
        assert!(subcommands.contains(&format!("cachet\\-{}", sub.replace('-', "\\-"))), "SUBCOMMANDS lacks {sub}");
    }
    let o = cachet(&["man", "serve"]);
    assert!(o.status.success(), "{o:?}");
    let serve = stdout(&o);
    assert!(serve.contains(".TH cachet-serve 1"), "{}", &serve[..200.min(serve.len())]);
    assert!(serve.contains("\\-\\-data\\-dir") && serve.contains("CACHET_DATA_DIR"), "serve's page lists its flags and variables");
    let o = cachet(&["man", "no-such-command"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("serve"), "the error lists the subcommands: {o:?}");
}

#[test]
fn version_names_the_package_version_and_the_commit_built() {
    let o = cachet(&["--version"]);
    assert!(o.status.success(), "{o:?}");
    let version = stdout(&o);
    assert!(version.starts_with(&format!("cachet {} (commit ", env!("CARGO_PKG_VERSION"))), "{version}");
    let stamped = version.trim().rsplit("(commit ").next().unwrap().trim_end_matches(')').to_string();
    let git = |args: &[&str]| Command::new("git").args(args).current_dir(repo()).output().ok().filter(|o| o.status.success());
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        assert_eq!(stamped, "unknown", "outside a git checkout the commit is unknown");
        return;
    };
    let head = stdout(&head).trim().to_string();
    if stamped != head {
        // CI builds a clean checkout: the commit is HEAD, exactly. In a tree
        // shared with others HEAD may move while this binary builds (the
        // script runs before the link): then the stamp is an ancestor of
        // HEAD and the commit that followed it was made during that build
        // (at most 10 minutes before the binary was written) or after.
        assert!(std::env::var_os("CI").is_none(), "cachet --version says commit {stamped}, HEAD is {head}");
        let built = std::fs::metadata(env!("CARGO_BIN_EXE_cachet")).unwrap().modified().unwrap();
        let built = built.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let ancestor = git(&["merge-base", "--is-ancestor", &stamped, "HEAD"]).is_some();
        let next: Option<u64> = git(&["log", "--reverse", "--ancestry-path", "--format=%ct", &format!("{stamped}..HEAD")])
            .and_then(|o| stdout(&o).lines().next()?.trim().parse().ok());
        assert!(
            ancestor && next.is_some_and(|t| t + 600 >= built),
            "cachet --version says commit {stamped}, HEAD is {head} (and HEAD did not move while it was built)"
        );
    }
}
