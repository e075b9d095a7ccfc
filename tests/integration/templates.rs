//! Vendor templates through the binary (issue 16): `duet keygen` and `duet sign`, a signed
//! template verified from a keyring directory, its session snapshot when the template is
//! swapped mid-session, interoperability with the `minisign` tool, locked fields in `duet
//! check` and `duet explain`, and the CI formats: SARIF validated against the published
//! SARIF 2.1.0 schema (vendored in `data/`), `JUnit` read by an XML parser.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::machine::{INVENTORY, Machine};
use crate::support::{duet, indoc, repo, tree};

/// The vendor's template in the rig: its stop action runs the recorder with the vendor's
/// arguments, which a site may not change.
const VENDOR: &str = r"version: 1
title: vendor template
services: [AppServer]
actions:
  - id: app-stop
    file: rec
    args: [stop, vendor-args]
    control: stop
    locked: {fields: [args], reason: the vendor's tested shutdown}
";

const SITE: &str = "version: 1
title: site
disks: {system: [disk0, disk1], data: [disk2]}
include:
  - {file: vendor.yaml, signed: true}
";

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Keys made and a file signed by the binary, in `dir`.
fn keygen_and_sign(dir: &Path, name: &str, file: &Path) -> String {
    let out = dir.join(name).display().to_string();
    let made = duet(&["keygen", &out]).run();
    made.code(0).stdout_has("trust:");
    let secret = dir.join(format!("{name}.key"));
    assert_eq!(std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600, "the secret key is private");
    duet(&["keygen", &out]).run().code(1).stderr_has("already exists");
    let signed = duet(&["sign", &file.display().to_string(), "--key", &secret.display().to_string()]).run();
    signed.code(0).stdout_has(".minisig").stdout_has(&format!("sha256 {}", hex(&std::fs::read(file).unwrap())));
    std::fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap()
}

#[test]
fn a_signed_template_is_verified_and_its_verified_bytes_are_what_the_session_runs() {
    let m = Machine::with(SITE, INVENTORY);
    m.write("plans/vendor.yaml", VENDOR);
    std::fs::create_dir_all(m.path("keys")).unwrap();
    keygen_and_sign(&m.path("keys"), "contoso", &m.path("plans/vendor.yaml"));
    let keyring = m.path("keys");

    // Without the keyring nothing trusts the signature; with it the plan checks clean.
    let inventory = m.path("inventory.yaml").display().to_string();
    let check = || duet(&["check", &m.plan(), "--inventory", &inventory]).env_remove("DUET_KEYRING");
    check().run().code(1).stderr_has("duet::include::untrusted-key");
    check().env("DUET_KEYRING", &keyring).run().code(0);
    m.duet(&["split", &m.plan()]).env("DUET_KEYRING", &keyring).run().code(0);

    // The snapshot holds the bytes verified, their hash and signer, and the signature.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(m.state().join("session/plan/sources.json")).unwrap()).unwrap();
    let vendor =
        manifest.as_array().unwrap().iter().find(|f| f["file"].as_str().unwrap().ends_with("vendor.yaml")).unwrap();
    assert_eq!(vendor["signed_by"], "contoso");
    assert_eq!(vendor["sha256"], hex(VENDOR.as_bytes()).as_str());
    let snapshot = m.state().join("session").join(vendor["snapshot"].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(&snapshot).unwrap(), VENDOR);
    let sig = std::fs::read_to_string(format!("{}.minisig", snapshot.display())).unwrap();
    assert_eq!(sig, std::fs::read_to_string(m.path("plans/vendor.yaml.minisig")).unwrap());

    // The vendor's file is swapped (and validly re-signed) mid-session: nothing changes.
    m.write("plans/vendor.yaml", &VENDOR.replace("vendor-args", "swapped-args"));
    keygen_and_sign(&m.path("keys"), "other", &m.path("plans/vendor.yaml"));
    let status = m.status();
    assert!(status["changed_files"].to_string().contains("vendor.yaml"), "{status}");
    m.duet(&["run", &m.plan()]).env("DUET_KEYRING", &keyring).run().code(0).stdout_has("Finish (Idle)");
    let all: Vec<String> = m.recorded("Upgrade").into_iter().chain(m.recorded("Production")).collect();
    assert!(all.iter().any(|l| l.ends_with("|stop vendor-args")), "{all:#?}");
    assert!(!all.iter().any(|l| l.contains("swapped")), "the swapped template never ran: {all:#?}");
}

#[test]
fn tampered_untrusted_unsigned_and_mispinned_templates_are_refused_at_the_include() {
    let dir = tree(&[("vendor.yaml", VENDOR.as_bytes())]);
    let public = keygen_and_sign(dir.path(), "contoso", &dir.path().join("vendor.yaml"));
    let key = public.lines().nth(1).unwrap();
    let site =
        |include: &str| format!("version: 1\ninclude:\n  - {include}\ntrust:\n  - {{name: Contoso, key: {key}}}\n");
    let check = |plan: &str| {
        std::fs::write(dir.path().join("site.yaml"), plan).unwrap();
        duet(&["check", "site.yaml", "--format", "json"]).in_dir(dir.path()).run()
    };
    let first = |run: &crate::support::Run| {
        let d = run.json()["diagnostics"][0].clone();
        (d["code"].as_str().unwrap().to_owned(), d["file"].as_str().unwrap().to_owned(), d["line"].as_u64().unwrap())
    };
    check(&site("{file: vendor.yaml, signed: Contoso}")).code(0);
    let summary = duet(&["compile", "site.yaml"]).in_dir(dir.path()).run();
    summary
        .code(0)
        .stdout_has(&format!("  vendor.yaml  (signed by Contoso; sha256 {})", &hex(VENDOR.as_bytes())[..16]));

    let pinned = check(&site(&format!("{{file: vendor.yaml, sha256: {}}}", hex(VENDOR.as_bytes()))));
    pinned.code(0);
    let summary = duet(&["compile", "site.yaml"]).in_dir(dir.path()).run();
    summary.code(0).stdout_has(&format!("  vendor.yaml  (sha256 {}, pinned)", &hex(VENDOR.as_bytes())[..16]));
    let wrong = check(&site(&format!("{{file: vendor.yaml, sha256: {}}}", hex(b"other"))));
    assert_eq!(first(wrong.code(1)), ("duet::include::hash-mismatch".into(), "site.yaml".into(), 3));

    // One byte changed after signing.
    let mut bytes = VENDOR.as_bytes().to_vec();
    let at = VENDOR.find("vendor-args").unwrap();
    bytes[at] = b'V';
    std::fs::write(dir.path().join("vendor.yaml"), &bytes).unwrap();
    let tampered = check(&site("{file: vendor.yaml, signed: true}"));
    assert_eq!(first(tampered.code(1)), ("duet::include::bad-signature".into(), "site.yaml".into(), 3));

    // Signed by a key the site does not trust.
    std::fs::write(dir.path().join("vendor.yaml"), VENDOR).unwrap();
    keygen_and_sign(dir.path(), "stranger", &dir.path().join("vendor.yaml"));
    let untrusted = check(&site("{file: vendor.yaml, signed: true}"));
    assert_eq!(first(untrusted.code(1)), ("duet::include::untrusted-key".into(), "site.yaml".into(), 3));

    std::fs::remove_file(dir.path().join("vendor.yaml.minisig")).unwrap();
    let unsigned = check(&site("{file: vendor.yaml, signed: true}"));
    assert_eq!(first(unsigned.code(1)), ("duet::include::unsigned".into(), "site.yaml".into(), 3));
    let human = duet(&["check", "site.yaml"]).in_dir(dir.path()).run();
    human.code(1).stderr_has("site.yaml:3:").stderr_has("signature required here").stderr_has("duet sign");
}

/// `duet sign` and the `minisign` tool read each other's signatures (the format is
/// minisign's). Skipped, saying why, where the tool is not installed (`.ci/run` installs it).
#[test]
fn signatures_interoperate_with_the_minisign_tool() {
    let Ok(version) = std::process::Command::new("minisign").arg("-v").output() else {
        eprintln!("skipped: the minisign tool is not installed (apt-get install minisign)");
        return;
    };
    assert!(version.status.success());
    let dir = tree(&[("vendor.yaml", VENDOR.as_bytes())]);
    let file = dir.path().join("vendor.yaml");
    keygen_and_sign(dir.path(), "contoso", &file);
    let verified = std::process::Command::new("minisign")
        .args(["-V", "-p"])
        .arg(dir.path().join("contoso.pub"))
        .arg("-m")
        .arg(&file)
        .output()
        .unwrap();
    assert!(verified.status.success(), "minisign -V: {}", String::from_utf8_lossy(&verified.stderr));

    // A key and a signature made by the tool, trusted from a keyring directory.
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    let made = std::process::Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(dir.path().join("keys/tool.pub"))
        .arg("-s")
        .arg(dir.path().join("tool.key"))
        .output()
        .unwrap();
    assert!(made.status.success(), "minisign -G: {}", String::from_utf8_lossy(&made.stderr));
    let signed = std::process::Command::new("minisign")
        .args(["-S", "-s"])
        .arg(dir.path().join("tool.key"))
        .arg("-m")
        .arg(&file)
        .output()
        .unwrap();
    assert!(signed.status.success(), "minisign -S: {}", String::from_utf8_lossy(&signed.stderr));
    std::fs::write(dir.path().join("site.yaml"), "version: 1\ninclude: [{file: vendor.yaml, signed: tool}]\n").unwrap();
    duet(&["check", "site.yaml", "--keyring", "keys"]).in_dir(dir.path()).run().code(0);
    let json = duet(&["compile", "site.yaml", "--keyring", "keys", "--format", "json"]).in_dir(dir.path()).run();
    assert_eq!(json.code(0).json()["sources"][0]["signed_by"], "tool");
}

#[test]
fn a_locked_field_is_refused_with_both_places_and_explain_shows_the_lock() {
    let site = indoc(
        r"
        version: 1
        include: [vendor.yaml]
        actions:
          - id: app-stop
            timeout: 5m
            args: [stop, now]
        ",
    );
    let dir = tree(&[("site.yaml", site.as_bytes()), ("vendor.yaml", VENDOR.as_bytes()), ("rec", b"#!/bin/sh\n")]);
    let run = duet(&["check", "site.yaml"]).in_dir(dir.path()).run();
    run.code(1)
        .stderr_has("`args` of action `app-stop` is locked by `vendor.yaml`")
        .stderr_has("[site.yaml:6:11]")
        .stderr_has("locked here: the vendor's tested shutdown")
        .stderr_has("[vendor.yaml:9:5]");
    assert!(!run.stderr.contains("`timeout` of action"), "timeout is not locked: {}", run.stderr);

    let explain = duet(&["explain", "vendor.yaml", "action:app-stop"]).in_dir(dir.path()).run();
    explain.code(0).stdout_has("locked at vendor.yaml:9 (args): the vendor's tested shutdown").stdout_has("(locked)");
}

/// The SARIF output is valid against the published SARIF 2.1.0 schema, and a code-scanning UI
/// finds each problem on its line; the `JUnit` output reads as XML with one failing case.
#[test]
fn check_writes_sarif_that_the_published_schema_accepts_and_junit_that_parses() {
    let site = "version: 1\ninclude: [vendor.yaml]\nactions:\n  - {id: app-stop, args: [x]}\nservices: [{name: B, after: [Missing]}]\n";
    let dir = tree(&[("site.yaml", site.as_bytes()), ("vendor.yaml", VENDOR.as_bytes()), ("rec", b"#!/bin/sh\n")]);
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/integration/data/sarif-schema-2.1.0.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::options().with_draft(jsonschema::Draft::Draft4).build(&schema).unwrap();

    let run = duet(&["check", "site.yaml", "--format", "sarif"]).in_dir(dir.path()).run();
    let sarif = run.code(1).json();
    let errors: Vec<String> = validator.iter_errors(&sarif).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}\n{sarif:#}");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    let lock = results.iter().find(|r| r["ruleId"] == "duet::lock::overridden").unwrap();
    assert_eq!(lock["level"], "error");
    let place = &lock["locations"][0]["physicalLocation"];
    assert_eq!(
        (place["artifactLocation"]["uri"].as_str(), place["region"]["startLine"].as_u64()),
        (Some("site.yaml"), Some(4))
    );
    assert_eq!(lock["relatedLocations"][0]["physicalLocation"]["artifactLocation"]["uri"], "vendor.yaml");
    let rules = sarif["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules[lock["ruleIndex"].as_u64().unwrap() as usize]["id"], "duet::lock::overridden");

    // A clean plan is a valid, empty log.
    let clean = duet(&["check", "vendor.yaml", "--format", "sarif"]).in_dir(dir.path()).run();
    let clean = clean.code(0).json();
    assert!(validator.is_valid(&clean), "{clean:#}");
    assert_eq!(clean["runs"][0]["results"], serde_json::json!([]));

    // A plan that cannot be read: a result on the file, without a region.
    let missing = duet(&["check", "missing.yaml", "--format", "sarif"]).in_dir(dir.path()).run();
    let missing = missing.code(1).json();
    assert!(validator.is_valid(&missing), "{missing:#}");
    let place = &missing["runs"][0]["results"][0]["locations"][0]["physicalLocation"];
    assert_eq!(place["artifactLocation"]["uri"], "missing.yaml");
    let missing = duet(&["check", "missing.yaml", "--format", "junit"]).in_dir(dir.path()).run();
    assert_eq!(
        junit_cases(&missing.code(1).stdout),
        [("missing.yaml".to_owned(), Some("duet::file::unreadable".to_owned()))]
    );

    let junit = duet(&["check", "site.yaml", "--format", "junit"]).in_dir(dir.path()).run();
    let cases = junit_cases(&junit.code(1).stdout);
    assert_eq!(
        cases,
        [("site.yaml".to_owned(), Some("duet::lock::overridden".to_owned())), ("vendor.yaml".to_owned(), None)],
        "{}",
        junit.stdout
    );
    let clean = duet(&["check", "vendor.yaml", "--format", "junit"]).in_dir(dir.path()).run();
    assert_eq!(junit_cases(&clean.code(0).stdout), [("vendor.yaml".to_owned(), None)]);
}

/// The test cases of a `JUnit` report, read by a real XML parser: each case's name and its
/// failure's type, if it failed. Malformed XML fails the test.
fn junit_cases(xml: &str) -> Vec<(String, Option<String>)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut cases: Vec<(String, Option<String>)> = Vec::new();
    let attr = |e: &quick_xml::events::BytesStart<'_>, name: &[u8]| {
        e.try_get_attribute(name).unwrap().map(|a| a.unescape_value().unwrap().into_owned())
    };
    let mut depth = 0i32;
    loop {
        match reader.read_event().unwrap_or_else(|e| panic!("not XML: {e}\n{xml}")) {
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == b"testcase" => {
                cases.push((attr(&e, b"name").unwrap(), None));
                depth += 1;
            }
            Event::Start(e) if e.name().as_ref() == b"failure" => {
                cases.last_mut().unwrap().1 = attr(&e, b"type");
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(depth > 0, "no test case in\n{xml}");
    cases
}

/// Every plan in the template library checks clean (no error, no warning) without and with the
/// library's inventory, rehearses on the simulator from readiness to finish, and has its line
/// in the library's README.
#[test]
fn every_template_in_the_library_checks_clean_and_rehearses_on_the_sim() {
    const INVENTORY: &str = "plans/machines/library.yaml";
    let readme = std::fs::read_to_string(repo().join("plans/templates/README.md")).unwrap();
    let mut plans: Vec<String> = std::fs::read_dir(repo().join("plans/templates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| Path::new(n).extension().is_some_and(|e| e == "yaml"))
        .collect();
    plans.sort();
    assert!(plans.len() >= 10, "eight templates and two site plans: {plans:?}");
    for name in &plans {
        assert!(readme.contains(&format!("| `{name}` |")), "plans/templates/README.md has no line for {name}");
        let plan = format!("plans/templates/{name}");
        for args in [vec!["check", plan.as_str()], vec!["check", plan.as_str(), "--inventory", INVENTORY]] {
            let run = duet(&args).run();
            run.code(0).stdout_has(&format!("{plan}: valid"));
            assert!(!run.stderr.contains("warning"), "{args:?} warned:\n{}", run.stderr);
        }
        let state = tempfile::tempdir().unwrap();
        let state = state.path().display().to_string();
        let run = duet(&["run", &plan, "--inventory", INVENTORY, "--state-dir", &state]).run();
        run.code(0).stdout_has("Finish (Idle)").stdout_has("Fault Tolerant | Idle | Ready");
        if !name.starts_with("site-") {
            assert!(run.stdout.contains("action:"), "{name} ran its actions:\n{}", run.stdout);
        }
    }
}

/// The library's site plan is refused what its template locks, and a template that is not the
/// one it pinned.
#[test]
fn the_library_site_plan_is_refused_a_locked_change_and_another_template_version() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["sqlserver.yaml", "site-sql01.yaml"] {
        std::fs::copy(repo().join("plans/templates").join(name), dir.path().join(name)).unwrap();
    }
    let site = std::fs::read_to_string(dir.path().join("site-sql01.yaml")).unwrap();
    let locked = site.replace("    timeout: 15m", "    timeout: 15m\n    args: [checkpoint, master]");
    std::fs::write(dir.path().join("site-sql01.yaml"), &locked).unwrap();
    let run = duet(&["check", "site-sql01.yaml"]).in_dir(dir.path()).run();
    run.code(1)
        .stderr_has("`args` of action `sql-checkpoint` is locked by `sqlserver.yaml`")
        .stderr_has("locked here: the Upgrade Side must start from clean pages");

    std::fs::write(dir.path().join("site-sql01.yaml"), &site).unwrap();
    let template = std::fs::read_to_string(dir.path().join("sqlserver.yaml")).unwrap();
    std::fs::write(dir.path().join("sqlserver.yaml"), template.replace("timeout: 5m", "timeout: 6m")).unwrap();
    let run = duet(&["check", "site-sql01.yaml"]).in_dir(dir.path()).run();
    run.code(1).stderr_has("`sqlserver.yaml` does not match the sha256 pinned for it");
}
