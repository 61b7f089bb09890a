//! The benchmark's GitOps repository: 200 apps with `test` and `prod` values files among
//! documentation pages, and a long history, generated with git fast-import.

use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
};

use super::{APPS, BenchResult, PATH};

/// An app's values file at `version`.
pub(crate) fn values(app: &str, version: &str) -> String {
    format!(
        "# {app}\nreplicaCount: 2\nimage:\n  repository: registry.example.com/{app}\n  version: \"{version}\"  # bumped by CD\n"
    )
}

pub(crate) fn path(app: &str, phase: &str) -> String {
    PATH.replace("{app}", app).replace("{phase}", phase)
}

/// `commits` commits over `files` files with git fast-import (seconds, not minutes).
pub(crate) fn generate(bare: &Path, commits: usize, files: usize) -> BenchResult<()> {
    let run = |args: &[&str]| Command::new("git").args(args).status();
    run(&[
        "init",
        "-q",
        "--bare",
        "-b",
        "main",
        &bare.display().to_string(),
    ])?;
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(bare)
        .stdin(Stdio::piped())
        .spawn()?;
    let mut out = std::io::BufWriter::new(child.stdin.take().ok_or("stdin")?);
    let data = |out: &mut dyn Write, text: &str| writeln!(out, "data {}\n{text}", text.len());
    let mut ts = 1_700_000_000u64;
    let mut commit = |out: &mut std::io::BufWriter<_>,
                      msg: &str,
                      files: &[(String, String)]|
     -> std::io::Result<()> {
        ts += 60;
        writeln!(
            out,
            "commit refs/heads/main\ncommitter GitOps <gitops@example.com> {ts} +0000"
        )?;
        data(out, msg)?;
        for (p, content) in files {
            writeln!(out, "M 100644 inline {p}")?;
            data(out, content)?;
        }
        Ok(())
    };
    let mut initial = Vec::new();
    for a in 0..APPS {
        let app = format!("app{a:03}");
        initial.push((path(&app, "test"), values(&app, "1.0")));
        initial.push((path(&app, "prod"), values(&app, "1.0")));
    }
    for f in initial.len()..files {
        initial.push((
            format!("docs/section{}/page{f}.md", f % 40),
            format!("# Page {f}\n\nSome text.\n"),
        ));
    }
    commit(&mut out, "initial", &initial)?;
    for c in 1..commits {
        let f = (c * 7919) % files;
        let (p, _) = &initial[f];
        let content = if p.ends_with(".yaml") {
            values(p.split('/').nth(1).unwrap_or("app"), &format!("1.{c}"))
        } else {
            format!("# Page {f}\n\nRevision {c}.\n")
        };
        commit(&mut out, &format!("change {c}"), &[(p.clone(), content)])?;
    }
    drop(out);
    child.wait()?;
    Ok(())
}
