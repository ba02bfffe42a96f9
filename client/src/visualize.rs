//! `visualize()`: the task graph as Graphviz DOT, and SVG or PNG through the
//! `dot` program when it is installed.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use rustc_hash::FxHashSet;

use crate::delayed::{Node, NodeKind};
use crate::{Error, Result};

/// A graph drawing in DOT text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dot(pub String);

impl std::fmt::Display for Dot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Dot {
    /// Draws like Dask: a circle per task labelled with its function, a box
    /// per result, arrows in the direction data flows.
    pub(crate) fn of(outputs: &[&Arc<Node>]) -> Dot {
        let mut out = String::from("digraph rask {\n  rankdir=BT;\n  node [fontname=\"Helvetica\"];\n");
        let mut seen: FxHashSet<*const Node> = FxHashSet::default();
        let mut stack: Vec<&Arc<Node>> = outputs.to_vec();
        while let Some(node) = stack.pop() {
            if !seen.insert(Arc::as_ptr(node)) {
                continue;
            }
            let key = node.key.to_string();
            let data = quote(&key);
            let func = quote(&format!("{key}-fn"));
            match &node.kind {
                NodeKind::Task { deps, .. } => {
                    let label = quote(node.key.prefix());
                    out.push_str(&format!("  {func} [label={label}, shape=circle];\n"));
                    out.push_str(&format!("  {data} [label=\"\", shape=box];\n"));
                    out.push_str(&format!("  {func} -> {data};\n"));
                    for dep in deps {
                        out.push_str(&format!("  {} -> {func};\n", quote(&dep.key.to_string())));
                        stack.push(dep);
                    }
                }
                NodeKind::Persisted { .. } => {
                    out.push_str(&format!("  {data} [label={}, shape=box, style=filled];\n", quote(node.key.prefix())));
                }
            }
        }
        out.push_str("}\n");
        Dot(out)
    }

    /// Writes the drawing. `.dot` writes the text; `.svg`, `.png` and `.pdf`
    /// run Graphviz `dot`, and say how to install it when it is missing.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let program = std::env::var_os("RASK_GRAPHVIZ_DOT").unwrap_or_else(|| "dot".into());
        self.write_with(path, program)
    }

    /// As [`Self::write`], running the given Graphviz `dot` executable.
    pub fn write_with(&self, path: impl AsRef<Path>, dot_program: impl AsRef<std::ffi::OsStr>) -> Result<()> {
        let path = path.as_ref();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("dot").to_ascii_lowercase();
        if ext == "dot" || ext == "gv" {
            return std::fs::write(path, &self.0)
                .map_err(|e| Error::Visualize(format!("writing {}: {e}", path.display())));
        }
        if !matches!(ext.as_str(), "svg" | "png" | "pdf") {
            return Err(Error::Visualize(format!("unsupported format .{ext}: use .dot, .svg, .png or .pdf")));
        }
        let mut child = Command::new(dot_program)
            .arg(format!("-T{ext}"))
            .arg("-o")
            .arg(path)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::Visualize(format!(
                    "Graphviz `dot` is needed to draw .{ext} files but could not be run ({e}). Install it (Debian/Ubuntu: `apt-get install graphviz`) or write a .dot file instead"
                ))
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(self.0.as_bytes()).map_err(|e| Error::Visualize(e.to_string()))?;
        }
        let output = child.wait_with_output().map_err(|e| Error::Visualize(e.to_string()))?;
        if !output.status.success() {
            return Err(Error::Visualize(format!("dot failed: {}", String::from_utf8_lossy(&output.stderr))));
        }
        Ok(())
    }
}
