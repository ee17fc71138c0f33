//! The man pages and shell completions that `vmctx generate-assets` renders from the binary's
//! clap definitions: a page per subcommand, pages that say everything `vmctx help` says, and
//! completions that offer every subcommand (and not the hidden generator).

use std::path::Path;
use std::process::Command;
use vmctx_tests::cli_help::{command_paths, commands_in, help, page_name};
use vmctx_tests::*;

fn generate() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let o = vmctx(&["generate-assets", "--out", t.path().to_str().unwrap()]);
    assert!(o.status.success(), "generate-assets: {}", stderr(&o));
    t
}

/// The subcommand paths, checked to hold known ones so a broken help parser cannot pass.
fn paths() -> Vec<Vec<String>> {
    let paths = command_paths();
    for known in [
        &["apply"][..],
        &["imds", "serve"],
        &["iso", "cat"],
        &["sync"],
    ] {
        assert!(
            paths.iter().any(|p| p == known),
            "{known:?} not in {paths:?}"
        );
    }
    paths
}

#[test]
fn a_page_for_every_subcommand_and_no_other() {
    let t = generate();
    let mut want: Vec<String> = std::iter::once(Vec::new())
        .chain(paths())
        .map(|p| format!("{}.1", page_name(&p)))
        .collect();
    want.sort();
    let mut have: Vec<String> = std::fs::read_dir(t.path().join("man"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    have.sort();
    assert_eq!(
        have, want,
        "pages: the hidden generator and `help` get none"
    );
}

/// The page rendered by man-db, as words: no wrapping (so no hyphenation), no pager, no bold.
fn man_words(page: &Path) -> Vec<String> {
    let o = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANWIDTH", "1000")
        .env("LANG", "C.UTF-8")
        .env("MANPAGER", "cat")
        .env_remove("MAN_KEEP_FORMATTING")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "man -l {}: {}",
        page.display(),
        stderr(&o)
    );
    words(&stdout(&o))
}

/// Whitespace-separated words, list bullets (help's `-`, man's `•`) left out.
fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .filter(|w| !["-", "•"].contains(w))
        .map(str::to_string)
        .collect()
}

fn find(haystack: &[String], needle: &[String]) -> Option<usize> {
    haystack
        .windows(needle.len().max(1))
        .position(|w| w == needle)
}

/// Splits the bracketed notes (`[default: /]`) off a help line. Clap's compact layout puts them
/// after the help text, the man page right after the option; `[possible values: a, b]` becomes
/// the man page's list, `Possible values: a b`.
fn split_notes(line: &str) -> (String, Vec<String>) {
    let mut text = line.to_string();
    let mut notes = Vec::new();
    for kind in ["default", "possible values", "env", "aliases"] {
        let open = format!("[{kind}: ");
        while let Some(at) = text.find(&open) {
            let end = at + text[at..].find(']').expect("note closed");
            let body = &text[at + open.len()..end];
            notes.push(match kind {
                "possible values" => format!("Possible values: {}", body.replace(',', "")),
                _ => text[at..=end].to_string(),
            });
            text.replace_range(at..=end, "");
        }
    }
    (text, notes)
}

/// Whether the man page's words hold what a help line says: its pieces (option, help text:
/// the compact layout separates them by two spaces) in order, and its notes after the option.
fn says(man: &[String], line: &str) -> bool {
    let (text, notes) = split_notes(line.trim());
    let mut from = 0;
    let mut start = None;
    for piece in text.split("  ").map(words).filter(|w| !w.is_empty()) {
        let Some(i) = find(&man[from..], &piece) else {
            return false;
        };
        start.get_or_insert(from + i);
        from += i + piece.len();
    }
    let after = start.unwrap_or(0);
    notes
        .iter()
        .all(|n| find(&man[after..], &words(n)).is_some())
}

/// `man vmctx-apply` (and every other page) says each line `vmctx help apply` says: the about
/// text, every option with its value name, help, default and possible values, and each listed
/// subcommand (as the name of its page) with its about text. Only the usage line differs in form.
#[test]
fn man_pages_say_what_help_says() {
    if !need_tools(&["man"]) {
        return;
    }
    let t = generate();
    let mut checked = 0;
    for path in std::iter::once(Vec::new()).chain(paths()) {
        let page = page_name(&path);
        let man = man_words(&t.path().join(format!("man/{page}.1")));
        let help = help(&path);
        let expect = |line: &str| {
            assert!(
                says(&man, line),
                "`vmctx help {}` says {line:?}, man {page} does not:\n{}",
                path.join(" "),
                man.join(" ")
            )
        };
        let commands = commands_in(&help);
        for (name, about) in &commands {
            expect(&format!("{page}-{name}(1) {about}"));
        }
        let mut in_commands = false;
        for line in help.lines() {
            if !line.starts_with(' ') {
                in_commands = line == "Commands:";
            }
            let header = line.ends_with(':') && !line.starts_with(' ');
            if in_commands || header || line.starts_with("Usage:") {
                continue;
            }
            expect(line);
            checked += 1;
        }
        if path == ["apply"] {
            for must in [
                "--dry-run",
                "--stage",
                "--wait",
                "--root",
                "--source",
                "--json",
            ] {
                assert!(
                    man.iter().any(|w| w == must),
                    "{must} not in man vmctx-apply"
                );
            }
        }
    }
    assert!(checked > 50, "only {checked} help lines compared");
}

#[test]
fn completions_offer_every_subcommand() {
    let t = generate();
    let paths = paths();
    for file in ["vmctx.bash", "_vmctx", "vmctx.fish"] {
        let text = std::fs::read_to_string(t.path().join("completions").join(file)).unwrap();
        let names: Vec<&str> = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .collect();
        for path in &paths {
            let name = path.last().unwrap();
            assert!(names.contains(&name.as_str()), "{file} never names {name}");
        }
        assert!(
            !text.contains("generate-assets"),
            "{file} offers the hidden generate-assets"
        );
    }
}

/// The bash completion parses, and completing after `vmctx ` and `vmctx imds ` offers exactly
/// the subcommands that `vmctx help` lists there.
#[test]
fn bash_completes_subcommands() {
    if !need_tools(&["bash"]) {
        return;
    }
    let t = generate();
    let file = t.path().join("completions/vmctx.bash");
    let o = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(o.status.success(), "bash -n: {}", stderr(&o));
    for path in [vec![], vec!["imds".to_string()]] {
        // COMP_WORDS as bash sets them with the cursor on an empty word after `path`.
        let words: Vec<String> = std::iter::once("vmctx".to_string())
            .chain(path.iter().cloned())
            .chain(std::iter::once(String::new()))
            .collect();
        let prev = &words[words.len() - 2];
        let script = format!(
            "source \"$1\"; COMP_WORDS=({}); COMP_CWORD={}; _vmctx vmctx '' {prev}; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            words
                .iter()
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(" "),
            words.len() - 1,
        );
        let o = Command::new("bash")
            .args(["-c", &script, "bash"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(o.status.success(), "completing {path:?}: {}", stderr(&o));
        let mut offered: Vec<String> = stdout(&o)
            .lines()
            .filter(|w| !w.starts_with('-'))
            .map(str::to_string)
            .collect();
        let mut want: Vec<String> = commands_in(&help(&path))
            .into_iter()
            .map(|(name, _)| name)
            .chain(["help".to_string()])
            .collect();
        offered.sort();
        want.sort();
        assert_eq!(offered, want, "bash completion after vmctx {path:?}");
    }
}
