//! CI installs every tool the tests ask for. `.ci/tools` lists them (command and Debian package or
//! installing script); this test reads the tests' own sources and the `# tools:` lines of the
//! scripts they run, and fails naming each tool that the list (and so `.ci/run`) leaves out.
//! `.ci/run` runs it first, before the installs and the slow tests.

use std::collections::BTreeSet;
use std::path::Path;
use vmctx_tests::{ci_tools, workspace};

/// Calls whose string literals (up to the closing bracket or parenthesis) name tools.
const MARKERS: &[&str] = &[
    "have_tool(\"",
    "need_tools(&[",
    "packaged_vm_ready(&[",
    "Command::new(\"",
];

/// The agent's unit tests ask with `os::test_tool` (its product code's `Command::new` is not a
/// test's request).
const UNIT_MARKERS: &[&str] = &["test_tool(\""];

/// The string literals after each marker in `src`: every tool a Rust test source asks for.
fn tools_in_rust(src: &str, markers: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for marker in markers {
        for (at, _) in src.match_indices(marker) {
            let rest = &src[at + marker.len() - usize::from(marker.ends_with('"'))..];
            let end = rest.find([')', ']']).unwrap_or(rest.len());
            let args = &rest[..end];
            // Literals are the odd pieces between quotes; a path ("/bin/sh") is not a tool name.
            for lit in args.split('"').skip(1).step_by(2) {
                if !lit.is_empty() && !lit.contains('/') && !lit.contains(' ') {
                    out.insert(lit.to_string());
                }
            }
        }
    }
    out
}

/// The `# tools:` line of each script in `dir` (a script without one is an error).
fn tools_in_scripts(dir: &Path) -> Result<BTreeSet<(String, String)>, String> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        if !text.starts_with("#!") {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("# tools:"))
            .ok_or_else(|| format!("vm-fixtures/{name} has no `# tools:` line"))?;
        for t in line.split_whitespace() {
            out.insert((name.clone(), t.to_string()));
        }
    }
    Ok(out)
}

/// Every tool the suite asks for, with where it is asked for.
fn asked_for() -> Vec<(String, String)> {
    let ws = workspace();
    let mut asked = Vec::new();
    let files = ["tests/tests", "tests/src"].into_iter().flat_map(|d| {
        std::fs::read_dir(ws.join(d))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "rs"))
    });
    for f in files {
        let src = std::fs::read_to_string(&f).unwrap();
        let name = f.strip_prefix(&ws).unwrap().display().to_string();
        if name.ends_with("ci_tools.rs") {
            continue; // its markers are data, not requests
        }
        asked.extend(
            tools_in_rust(&src, MARKERS)
                .into_iter()
                .map(|t| (name.clone(), t)),
        );
    }
    let mut dirs = vec![ws.join("agent/src")];
    while let Some(dir) = dirs.pop() {
        for p in std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()) {
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let src = std::fs::read_to_string(&p).unwrap();
                let name = p.strip_prefix(&ws).unwrap().display().to_string();
                asked.extend(
                    tools_in_rust(&src, UNIT_MARKERS)
                        .into_iter()
                        .map(|t| (name.clone(), t)),
                );
            }
        }
    }
    let scripts = tools_in_scripts(&ws.join("vm-fixtures")).unwrap_or_else(|e| panic!("{e}"));
    asked.extend(
        scripts
            .into_iter()
            .map(|(s, t)| (format!("vm-fixtures/{s}"), t)),
    );
    asked
}

#[test]
fn every_tool_the_tests_ask_for_is_installed_by_ci() {
    let listed: BTreeSet<&str> = ci_tools().iter().map(|(c, _)| c.as_str()).collect();
    let missing: Vec<String> = asked_for()
        .into_iter()
        .filter(|(_, t)| !listed.contains(t.as_str()))
        .map(|(at, t)| format!("`{t}` (asked for in {at})"))
        .collect();
    assert!(
        missing.is_empty(),
        "CI does not install: {}. Add `COMMAND PACKAGE` lines to .ci/tools.",
        missing.join(", ")
    );
}

#[test]
fn every_listed_tool_has_an_installer_that_ci_runs() {
    let ws = workspace();
    let run = std::fs::read_to_string(ws.join(".ci/run")).unwrap();
    assert!(
        run.contains("done <.ci/tools"),
        ".ci/run no longer installs the packages of .ci/tools"
    );
    for (cmd, src) in ci_tools() {
        assert!(!src.is_empty(), ".ci/tools: `{cmd}` names no package");
        if let Some(script) = src.strip_prefix('@') {
            let text = std::fs::read_to_string(ws.join(".ci").join(script))
                .unwrap_or_else(|e| panic!(".ci/tools: `{cmd}`: .ci/{script}: {e}"));
            assert!(
                run.contains(&format!("bash .ci/{script}")),
                ".ci/run does not run .ci/{script}, which installs `{cmd}`"
            );
            assert!(
                text.contains(cmd.as_str()),
                ".ci/{script} does not mention `{cmd}`"
            );
        } else {
            assert!(
                src.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c)),
                ".ci/tools: `{src}` (for `{cmd}`) is not a Debian package name"
            );
        }
    }
}

#[test]
fn the_scanner_finds_tools_in_each_form() {
    let src = r#"
        if !need("xorriso", have_tool("xorriso")) {}
        need_tools(&["mkfs.vfat", "mcopy"]);
        packaged_vm_ready(&["sfdisk"]);
        Command::new("losetup").arg("-f");
        Command::new("/bin/sh");
        need("root (namespaces)", is_root());
    "#;
    let found: Vec<String> = tools_in_rust(src, MARKERS).into_iter().collect();
    assert_eq!(
        found,
        ["losetup", "mcopy", "mkfs.vfat", "sfdisk", "xorriso"]
    );
    let unit = r#"if !crate::os::test_tool("ssh-keygen") { return; } Command::new("useradd");"#;
    assert_eq!(
        tools_in_rust(unit, UNIT_MARKERS)
            .into_iter()
            .collect::<Vec<_>>(),
        ["ssh-keygen"]
    );
}
