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
    // `BENCH_DELTA_HEAVY=1`: pages of 6 KB of incompressible text, one line of which each
    // revision rewrites, packed by `git gc --aggressive`: long delta chains, as real monorepos
    // have, which libgit2's indexer resolves on one thread.
    let heavy = std::env::var_os("BENCH_DELTA_HEAVY").is_some();
    let page = |f: usize, revision: usize| {
        if heavy {
            heavy_page(f, revision)
        } else if revision == 0 {
            format!("# Page {f}\n\nSome text.\n")
        } else {
            format!("# Page {f}\n\nRevision {revision}.\n")
        }
    };
    let mut initial = Vec::new();
    for a in 0..APPS {
        let app = format!("app{a:03}");
        initial.push((path(&app, "test"), values(&app, "1.0")));
        initial.push((path(&app, "prod"), values(&app, "1.0")));
    }
    for f in initial.len()..files {
        initial.push((format!("docs/section{}/page{f}.md", f % 40), page(f, 0)));
    }
    commit(&mut out, "initial", &initial)?;
    for c in 1..commits {
        let f = (c * 7919) % files;
        let (p, _) = &initial[f];
        let content = if p.ends_with(".yaml") {
            values(p.split('/').nth(1).unwrap_or("app"), &format!("1.{c}"))
        } else {
            page(f, c)
        };
        commit(&mut out, &format!("change {c}"), &[(p.clone(), content)])?;
    }
    drop(out);
    child.wait()?;
    if heavy {
        eprintln!("git gc --aggressive…");
        let gc = Command::new("git")
            .args(["gc", "--aggressive", "--prune=now", "--quiet"])
            .current_dir(bare)
            .status()?;
        if !gc.success() {
            return Err("git gc --aggressive failed".into());
        }
    }
    Ok(())
}

/// Page `f` at `revision`: 96 lines of 64 random characters (6 KB that do not compress), of
/// which each revision rewrote one.
fn heavy_page(f: usize, revision: usize) -> String {
    const LINES: usize = 96;
    let line = |n: usize, seed: usize| {
        let mut x = (f as u64) << 40 ^ (n as u64) << 20 ^ seed as u64 ^ 0x9e37_79b9_7f4a_7c15;
        (0..64)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                        [(x % 64) as usize],
                )
            })
            .collect::<String>()
    };
    // The revision that last rewrote each line (revisions are commit numbers).
    let mut text = format!("# Page {f}\n\n");
    for n in 0..LINES {
        let seed = if revision > 0 && revision % LINES == n {
            revision
        } else {
            0
        };
        text.push_str(&line(n, seed));
        text.push('\n');
    }
    text
}
