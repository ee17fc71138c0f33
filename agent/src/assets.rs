//! Man pages and shell completions rendered from the clap definitions in `cli` (the hidden
//! `vmctx generate-assets`): `man/vmctx.1` plus one page per subcommand, named as git's and
//! cargo's are (`vmctx-apply.1`, `vmctx-imds-serve.1`), and `completions/` for bash, zsh and fish.

use crate::cli::Cli;
use clap::CommandFactory;
use clap_complete::Shell;
use std::path::{Path, PathBuf};

/// Writes every page and completion file under `out`; returns the files written.
pub fn generate(out: &Path) -> Result<Vec<PathBuf>, String> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // build() hands the global --root to every subcommand and names them vmctx-apply, …
    cmd.build();
    let man = out.join("man");
    let completions = out.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let mut written = Vec::new();
    pages(&cmd, None, &man, &mut written)?;
    for (shell, name) in [
        (Shell::Bash, "vmctx.bash"),
        (Shell::Zsh, "_vmctx"),
        (Shell::Fish, "vmctx.fish"),
    ] {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut completed(), "vmctx", &mut text);
        written.push(write(&completions.join(name), &text)?);
    }
    Ok(written)
}

/// The page of `cmd`, then those of its visible subcommands; each subcommand's page names its
/// parent's under SEE ALSO (the parent's SUBCOMMANDS section names the children).
fn pages(
    cmd: &clap::Command,
    parent: Option<&str>,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), String> {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_string();
    let mut text = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .source(concat!("vmctx ", env!("CARGO_PKG_VERSION")))
        .manual("vmctx")
        .render(&mut text)
        .map_err(|e| format!("rendering the man page of {name}: {e}"))?;
    if let Some(parent) = parent {
        text.extend_from_slice(format!(".SH \"SEE ALSO\"\n\\fB{parent}\\fR(1)\n").as_bytes());
    }
    written.push(write(&dir.join(format!("{name}.1")), &text)?);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages(sub, Some(&name), dir, written)?;
    }
    Ok(())
}

/// The command line as completions offer it: clap_complete would also offer hidden subcommands
/// (generate-assets), and clap cannot remove one, so the rest is copied into a new command.
fn completed() -> clap::Command {
    let cli = Cli::command();
    clap::Command::new("vmctx")
        .version(env!("CARGO_PKG_VERSION"))
        .args(cli.get_arguments().cloned())
        .subcommands(cli.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}

fn write(path: &Path, text: &[u8]) -> Result<PathBuf, String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path.to_path_buf())
}
