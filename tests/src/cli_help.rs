//! What `vmctx help` says about the command line: its subcommands, read from the binary's own
//! help, so the man page and completion tests check against what users see rather than a copy.

use crate::{stdout, vmctx};

/// The `Commands:` section of a help text: (name, about) for each line, `help` left out (the
/// man pages and completions have no such subcommand of their own).
pub fn commands_in(help: &str) -> Vec<(String, String)> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let l = l.trim();
            let (name, about) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (name != "help").then(|| (name.to_string(), about.trim().to_string()))
        })
        .collect()
}

/// `vmctx help PATH…`, which must succeed.
pub fn help(path: &[String]) -> String {
    let mut args = vec!["help"];
    args.extend(path.iter().map(String::as_str));
    let o = vmctx(&args);
    assert!(o.status.success(), "vmctx {args:?}: {}", crate::stderr(&o));
    stdout(&o)
}

/// Every visible subcommand as its path of names (`["apply"]`, `["imds", "serve"]`), parents
/// before children.
pub fn command_paths() -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut todo = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        for (name, _) in commands_in(&help(&path)) {
            let mut sub = path.clone();
            sub.push(name);
            paths.push(sub.clone());
            todo.push(sub);
        }
    }
    paths
}

/// The man page of a subcommand path, named as git's and cargo's: `vmctx-imds-serve`.
pub fn page_name(path: &[String]) -> String {
    std::iter::once("vmctx")
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("-")
}
