//! Hostile input: every case gets a clear diagnostic and exit 1, never a panic or a hang.

use std::fmt::Write;

use crate::support::{duet, tree};

#[track_caller]
fn refused(files: &[(&str, &[u8])], root: &str, message: &str) {
    let dir = tree(files);
    duet(&["check", root]).in_dir(dir.path()).run().code(1).stderr_has(message);
}

#[test]
fn empty_and_non_text_files() {
    refused(&[("p.yaml", b"")], "p.yaml", "plan `p.yaml` is empty");
    refused(&[("p.yaml", b"# nothing but a comment\n")], "p.yaml", "is empty");
    refused(
        &[("p.yaml", b"version: 1\ntitle: caf\xe9\n")],
        "p.yaml",
        "it is not UTF-8 text (invalid byte at line 2, column 11)",
    );
    let garbage: Vec<u8> = (0u32..4096).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    refused(&[("p.yaml", &garbage)], "p.yaml", "binary file");
    refused(&[("p.yaml", b"just a string\n")], "p.yaml", "a plan must be a YAML mapping of keys, found a string");
    refused(&[("p.yaml", b"- a\n- b\n")], "p.yaml", "found a list");
}

#[test]
fn directories_devices_and_symlink_loops() {
    let dir = tree(&[("plans/.keep", b"")]);
    duet(&["check", "plans"]).in_dir(dir.path()).run().code(1).stderr_has("it is a directory, not a plan file");
    duet(&["check", "/dev/zero"]).run().code(1).stderr_has("not a regular file");
    std::os::unix::fs::symlink(dir.path().join("b.yaml"), dir.path().join("a.yaml")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("a.yaml"), dir.path().join("b.yaml")).unwrap();
    duet(&["check", "a.yaml"]).in_dir(dir.path()).run().code(1).stderr_has("symlink loop");
}

#[test]
fn a_file_over_the_limit_is_refused_unread() {
    let dir = tree(&[]);
    let big = std::fs::File::create(dir.path().join("big.yaml")).unwrap();
    big.set_len(100 * 1024 * 1024).unwrap(); // sparse: 100 MB without writing them
    duet(&["check", "big.yaml"])
        .in_dir(dir.path())
        .run()
        .code(1)
        .stderr_has("it is 104857600 bytes, larger than the 16 MiB limit for one file");
}

#[test]
fn yaml_bombs_and_deep_nesting() {
    let mut bomb = String::from("version: 1\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        let _ = writeln!(bomb, "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]");
    }
    refused(&[("p.yaml", bomb.as_bytes())], "p.yaml", "YAML expands to more than 2000000 nodes");
    let block = (0..500).fold(String::new(), |mut s, i| {
        let _ = writeln!(s, "{}k{i}:", "  ".repeat(i));
        s
    });
    refused(&[("p.yaml", block.as_bytes())], "p.yaml", "YAML is nested more than 64 levels deep");
    let flow = format!("version: 1\ntitle: {}{}\n", "[".repeat(200_000), "]".repeat(200_000));
    refused(&[("p.yaml", flow.as_bytes())], "p.yaml", "invalid YAML");
}

#[test]
fn yaml_mistakes_point_at_the_line() {
    let dir = tree(&[("p.yaml", b"version: 1\nservices:\n\t- a\n")]);
    let run = duet(&["check", "p.yaml"]).in_dir(dir.path()).run();
    run.code(1).stderr_has("invalid YAML").stderr_has("p.yaml:3:").stderr_has("replace the tab characters with spaces");
    let dir = tree(&[("p.yaml", b"version: 1\ntitle: a\ntitle: b\n")]);
    duet(&["check", "p.yaml"])
        .in_dir(dir.path())
        .run()
        .code(1)
        .stderr_has("duplicate key `title`")
        .stderr_has("first defined here");
    refused(&[("p.yaml", b"version: 1\n---\nversion: 1\n")], "p.yaml", "a plan file holds one YAML document");
    refused(&[("p.yaml", b"version: 1\ntitle: !!python/object x\n")], "p.yaml", "unsupported YAML tag");
}

#[test]
fn bad_includes() {
    refused(
        &[("p.yaml", b"version: 1\ninclude: [notes.txt]\n"), ("notes.txt", b"hello")],
        "p.yaml",
        "include `notes.txt` is not a plan file",
    );
    refused(
        &[("p.yaml", b"version: 1\ninclude: [../etc/passwd.yaml]\n")],
        "p.yaml",
        "include `../etc/passwd.yaml` is not a bare file name",
    );
    refused(&[("p.yaml", b"version: 1\ninclude: [/etc/x.yaml]\n")], "p.yaml", "is not a bare file name");
    refused(
        &[("p.yaml", b"version: 1\ninclude: [bin.yaml]\n"), ("bin.yaml", b"\x7fELF\x02\x01\x01\x00\x00")],
        "p.yaml",
        "cannot read included plan `bin.yaml`: it contains NUL bytes",
    );
    refused(
        &[("p.yaml", b"version: 1\ninclude: [d.yaml]\n"), ("d.yaml/x", b"")],
        "p.yaml",
        "cannot read included plan `d.yaml`: it is a directory",
    );
}

#[test]
fn a_long_include_chain_is_cut_off() {
    let files: Vec<(String, Vec<u8>)> = (0..70)
        .map(|i| (format!("p{i}.yaml"), format!("version: 1\ninclude: [p{}.yaml]\n", i + 1).into_bytes()))
        .collect();
    let borrowed: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    refused(&borrowed, "p0.yaml", "includes are nested more than 64 levels deep");
}

#[test]
fn a_bad_inventory_is_reported_in_its_own_file() {
    let dir = tree(&[("p.yaml", b"version: 1\n"), ("inv.yaml", b"version: 1\ndisks: [{id: d, location: nearby}]\n")]);
    duet(&["check", "p.yaml", "--inventory", "inv.yaml"])
        .in_dir(dir.path())
        .run()
        .code(1)
        .stderr_has("invalid value `nearby` for `disks[1].location`")
        .stderr_has("inv.yaml:2:");
    duet(&["check", "p.yaml", "--inventory", "missing.yaml"])
        .in_dir(dir.path())
        .run()
        .code(1)
        .stderr_has("cannot read inventory `missing.yaml`: no such file");
}

#[test]
fn a_problem_far_along_a_very_long_line_is_reported_without_the_line() {
    let text = format!("{{version: 1, title: \"{}\", bogus: 1}}\n", "A".repeat(70_000));
    let dir = tree(&[("p.yaml", text.as_bytes())]);
    let run = duet(&["check", "p.yaml"]).in_dir(dir.path()).run();
    run.code(1).stderr_has("unknown key `bogus`").stderr_has("at p.yaml:1:70025: unknown key");
    assert!(run.stderr.len() < 2000, "the 70 KB line is not echoed: {} bytes", run.stderr.len());
}

#[test]
fn columns_count_characters_in_human_and_json_output() {
    let dir = tree(&[("p.yaml", "{version: 1, title: \"héllo ✓ 😀\", bogus: 1}\n".as_bytes())]);
    duet(&["check", "p.yaml"]).in_dir(dir.path()).run().code(1).stderr_has("[p.yaml:1:34]");
    let json = duet(&["check", "p.yaml", "--format", "json"]).in_dir(dir.path()).run().json();
    assert_eq!(json["diagnostics"][0]["column"], 34);
}

/// A plan reached through a symlink includes its siblings from the directory it was named in,
/// and diagnostics name the files that were read.
#[test]
fn a_symlinked_plan_includes_from_the_directory_it_was_named_in() {
    let dir = tree(&[
        ("real/plan.yaml", b"version: 1\ninclude: [child.yaml]\n"),
        ("real/child.yaml", b"version: 1\nbroken: [\n"),
        ("site/child.yaml", b"version: 1\nservices: [A]\n"),
    ]);
    std::os::unix::fs::symlink("../real/plan.yaml", dir.path().join("site/plan.yaml")).unwrap();
    let run = duet(&["compile", "site/plan.yaml", "--format", "json"]).in_dir(dir.path()).run();
    run.code(0);
    let sources = run.json()["sources"].clone();
    assert_eq!(sources[0]["file"], "site/child.yaml");
    assert!(sources[0]["path"].as_str().unwrap().ends_with("/site/child.yaml"), "{sources}");
}

#[test]
fn standard_input_is_not_a_plan_file() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_duet"))
        .args(["check", "/dev/stdin"])
        .stdin(std::process::Stdio::piped())
        .output()
        .expect("duet runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));
}

#[test]
fn file_name_suggestions_compare_names_not_extensions() {
    let dir = tree(&[("to.yaml", b"version: 1\n"), ("quickstart.yaml", b"version: 1\n")]);
    let run = duet(&["check", "nope.yaml"]).in_dir(dir.path()).run();
    assert!(!run.code(1).stderr.contains("did you mean"), "{}", run.stderr);
    duet(&["check", "quikstart.yaml"]).in_dir(dir.path()).run().code(1).stderr_has("did you mean `quickstart.yaml`?");
}

/// A plan can produce a warning per entry of a huge list: the first ones are drawn, the rest
/// counted, and the check stays fast.
#[test]
fn a_flood_of_diagnostics_is_cut_short_in_human_output() {
    let text = format!("version: 1\nservices:\n  - {{name: A, after: [{}]}}\n  - B\n", vec!["B"; 5000].join(", "));
    let dir = tree(&[("p.yaml", text.as_bytes())]);
    let run = duet(&["check", "p.yaml"]).in_dir(dir.path()).run();
    run.code(0).stderr_has("... and 4799 more diagnostics not shown; `--format json` lists them all");
    let json = duet(&["check", "p.yaml", "--format", "json"]).in_dir(dir.path()).run().json();
    assert_eq!(json["diagnostics"].as_array().unwrap().len(), 4999);
}
