//! A cheap pre-scan of a YAML document's nesting, before it reaches the YAML parser.
//!
//! libyaml (under serde_norway) scans a whole document into events before serde's recursion
//! limit applies, and its simple-key bookkeeping is quadratic in flow nesting: 1 KiB of gzipped
//! `[[[[…` ran for minutes. This scan is linear and errs on the side of counting too many
//! levels (a plain scalar continued on a new line may count), never too few: flow collections
//! (`[`, `{`) outside quoted and block scalars and comments, plus block levels (indentation
//! steps and compact `- ` / `? ` entries).

/// Deepest nesting accepted; cloud-configs seen in practice stay under 10.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("YAML nested deeper than {MAX_DEPTH} levels (line {line}): refused before parsing")]
pub struct TooDeep {
    pub line: usize,
}

/// Refuses `text` when its collections nest deeper than [`MAX_DEPTH`].
pub fn check(text: &str) -> Result<(), TooDeep> {
    let mut s = Scan::default();
    for (n, line) in text.split('\n').enumerate() {
        s.line(line.strip_suffix('\r').unwrap_or(line))
            .map_err(|()| TooDeep { line: n + 1 })?;
    }
    Ok(())
}

#[derive(Default)]
struct Scan {
    /// Open flow collections.
    flow: usize,
    /// Block indentation levels (columns), innermost last.
    indents: Vec<usize>,
    /// Inside a quoted scalar that runs on past its line.
    quote: Option<u8>,
    /// Inside a block scalar (`|`, `>`): the indentation of the line that opened it, and of its
    /// content once known.
    block_scalar: Option<(usize, Option<usize>)>,
}

impl Scan {
    fn depth(&self) -> usize {
        self.flow + self.indents.len()
    }

    fn line(&mut self, line: &str) -> Result<(), ()> {
        let b = line.as_bytes();
        let indent = b.iter().take_while(|&&c| c == b' ').count();
        let blank = b[indent..].iter().all(u8::is_ascii_whitespace);
        let mut i = 0;
        if let Some(q) = self.quote {
            match close_quote(b, 0, q) {
                Some(end) => {
                    self.quote = None;
                    i = end;
                }
                None => return Ok(()),
            }
        } else if let Some((opener, content)) = self.block_scalar {
            let inside = match content {
                _ if blank => true,
                Some(c) => indent >= c,
                None => indent > opener,
            };
            if inside {
                self.block_scalar = Some((opener, content.or(Some(indent))));
                return Ok(());
            }
            self.block_scalar = None;
        }
        if self.flow == 0 && i == 0 {
            if blank || b[indent] == b'#' {
                return Ok(());
            }
            while self.indents.last().is_some_and(|&top| top >= indent) {
                self.indents.pop();
            }
            self.indents.push(indent);
            i = indent;
            // Compact block entries: each `- ` or `? ` opens one more level.
            while matches!(b.get(i), Some(b'-' | b'?'))
                && b.get(i + 1).map_or(true, |c| *c == b' ' || *c == b'\t')
            {
                i += 1;
                while matches!(b.get(i), Some(b' ' | b'\t')) {
                    i += 1;
                }
                self.indents.push(i);
            }
            if self.depth() > MAX_DEPTH {
                return Err(());
            }
        }
        self.rest(b, i, indent)
    }

    /// Scans the line from byte `i` for flow indicators, quotes, block scalars and comments.
    fn rest(&mut self, b: &[u8], mut i: usize, indent: usize) -> Result<(), ()> {
        // Whether a new node may start here (quotes and brackets only open one there).
        let mut node_start = true;
        while let Some(&c) = b.get(i) {
            let after_space = i == 0 || matches!(b[i - 1], b' ' | b'\t');
            match c {
                b'#' if after_space => return Ok(()),
                b' ' | b'\t' => {}
                b'[' | b'{' if node_start || self.flow > 0 => {
                    self.flow += 1;
                    if self.depth() > MAX_DEPTH {
                        return Err(());
                    }
                    node_start = true;
                }
                b']' | b'}' if self.flow > 0 => {
                    self.flow -= 1;
                    node_start = false;
                }
                b',' if self.flow > 0 => node_start = true,
                b':' if b.get(i + 1).map_or(true, |n| matches!(n, b' ' | b'\t'))
                    || self.flow > 0 =>
                {
                    node_start = true
                }
                b'\'' | b'"' if node_start => match close_quote(b, i + 1, c) {
                    Some(end) => {
                        i = end;
                        node_start = false;
                        continue;
                    }
                    None => {
                        self.quote = Some(c);
                        return Ok(());
                    }
                },
                b'|' | b'>' if node_start && self.flow == 0 => {
                    self.block_scalar = Some((indent, None));
                    return Ok(());
                }
                // Anchors and tags leave room for the node after them.
                b'&' | b'!' if node_start => {
                    while b.get(i).is_some_and(|c| {
                        !matches!(c, b' ' | b'\t' | b',' | b'[' | b']' | b'{' | b'}')
                    }) {
                        i += 1;
                    }
                    continue;
                }
                _ => node_start = false,
            }
            i += 1;
        }
        Ok(())
    }
}

/// The index just past the quote `q` that closes a scalar begun before `from` (`''` and `\"`
/// are escapes), or `None` if it runs past the line.
fn close_quote(b: &[u8], mut i: usize, q: u8) -> Option<usize> {
    while let Some(&c) = b.get(i) {
        if q == b'"' && c == b'\\' {
            i += 2;
            continue;
        }
        if c == q {
            if q == b'\'' && b.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(text: &str) -> bool {
        check(text).is_ok()
    }

    #[test]
    fn ordinary_documents_pass() {
        let doc = "#cloud-config\nusers:\n  - name: a\n    groups: [wheel, 'x[', \"y{\"]\n    \
                   ssh_authorized_keys:\n      - ssh-ed25519 AAAA a@b\nwrite_files:\n- path: /x\n  \
                   content: |\n    [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n  \
                   \n    {{{{\nruncmd: [[ls, -l], [echo, 'it''s [ok'], \"a\\\"[\"]\nk: a[b{c # [[[\n";
        assert_eq!(check(doc), Ok(()));
        let flow = format!("{}{}", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        assert!(depth_ok(&format!("a: {flow}\n")));
    }

    #[test]
    fn deep_flow_is_refused() {
        let deep = "[".repeat(MAX_DEPTH + 1);
        assert_eq!(
            check(&format!("#cloud-config\na: {deep}\n")),
            Err(TooDeep { line: 2 })
        );
        assert!(!depth_ok(&"{a: ".repeat(MAX_DEPTH + 1)));
        // Spread over lines, and after a quoted scalar that spans lines.
        assert!(!depth_ok(&format!(
            "a: 'x\ny'\nb: {}",
            "[\n".repeat(MAX_DEPTH + 1)
        )));
        // A plain scalar's quote does not open a quoted scalar that would hide the rest.
        assert!(!depth_ok(&format!("a: [x' {}", "[".repeat(MAX_DEPTH + 1))));
    }

    #[test]
    fn deep_blocks_are_refused() {
        assert!(!depth_ok(&"- ".repeat(MAX_DEPTH + 1)));
        let mut nested = String::new();
        for i in 0..=MAX_DEPTH {
            nested += &format!("{}k{i}:\n", " ".repeat(i));
        }
        assert!(!depth_ok(&nested));
        // A block scalar ends where its indentation does.
        assert!(!depth_ok(&format!(
            "a: |\n    x\n  b: {}",
            "[".repeat(MAX_DEPTH)
        )));
    }
}
