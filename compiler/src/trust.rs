//! Pinned and signed includes (issue 16): an include may pin the SHA-256 of the template's
//! bytes and/or require a minisign signature (`NAME.minisig` next to it) by a trusted key.
//! Trusted keys come from the top-level plan's `trust:` and from a keyring directory of
//! minisign `.pub` files. The bytes checked are the bytes parsed (one read), so what was
//! verified is what the plan is made of and what a session snapshots.
//!
//! Signatures are verified by the `minisign-verify` crate; nothing here is cryptography.

use std::path::Path;

use minisign_verify::{PublicKey, Signature};
use sha2::{Digest, Sha256};

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::plan::{Include, Signer, TrustedKey};
use crate::source::{self, ReadError, SourceFile, SourceMap, Verified};

/// Where a keyring's keys and a signature are looked for.
pub const SIGNATURE_SUFFIX: &str = ".minisig";
pub const PUBLIC_KEY_SUFFIX: &str = ".pub";

/// A public key duet trusts, with the name diagnostics and the snapshot call it by.
#[derive(Clone, Debug)]
pub struct Key {
    pub name: String,
    key: PublicKey,
}

/// SHA-256 of some bytes, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    Sha256::digest(bytes).iter().fold(String::with_capacity(64), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The keys of a keyring directory: each `NAME.pub` file (minisign's public key format) is the
/// key `NAME`. An unreadable directory or key file is an error naming it.
pub fn load_keyring(dir: &Path, diags: &mut Diagnostics) -> Vec<Key> {
    let shown = dir.display();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            diags.push(
                Diagnostic::error("duet::trust::keyring", format!("cannot read the keyring directory `{shown}`: {e}"))
                    .in_file(shown.to_string())
                    .help("name a directory of minisign public keys (NAME.pub), or leave out --keyring"),
            );
            return Vec::new();
        }
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pub"))
        .collect();
    files.sort();
    let mut keys = Vec::new();
    for path in files {
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let parsed = source::read_text(&path)
            .map_err(|e| e.to_string())
            .and_then(|(_, text)| PublicKey::decode(text.trim()).map_err(|e| e.to_string()));
        match parsed {
            Ok(key) => keys.push(Key { name, key }),
            Err(why) => diags.push(
                Diagnostic::error(
                    "duet::trust::key",
                    format!("`{}` is not a minisign public key: {why}", path.display()),
                )
                .in_file(path.display().to_string())
                .help("a key file is the two lines `duet keygen` or `minisign -G` writes to NAME.pub"),
            ),
        }
    }
    keys
}

/// The top-level plan's `trust:` keys; one that does not decode is an error at it.
pub fn plan_keys(trust: &[TrustedKey], diags: &mut Diagnostics) -> Vec<Key> {
    trust
        .iter()
        .filter_map(|t| match PublicKey::from_base64(t.key.trim()) {
            Ok(key) => Some(Key { name: t.name.clone(), key }),
            Err(e) => {
                diags.push(
                    Diagnostic::error(
                        "duet::trust::key",
                        format!("the key of `{}` is not a minisign public key: {e}", t.name),
                    )
                    .at(t.loc, "not a public key")
                    .help("write the second line of the vendor's .pub file (it starts with `RW`)"),
                );
                None
            }
        })
        .collect()
}

/// Checks an included file against its include's pin and signature requirement. `path` is
/// where it was read (its signature is `path.minisig`). The diagnostic is at the include.
pub fn verify(rule: &Include, path: &Path, file: &SourceFile, keys: &[Key]) -> Result<Verified, Box<Diagnostic>> {
    let raw = file.raw_bytes();
    let sha256 = sha256_hex(&raw);
    let name = &rule.file.value;
    let at = rule.file.loc;
    if let Some(pin) = &rule.sha256 {
        if pin.value != sha256 {
            return Err(Box::new(
                Diagnostic::error("duet::include::hash-mismatch", format!("`{name}` does not match the sha256 pinned for it"))
                    .at(at, "content changed")
                    .related(pin.loc, "pinned here")
                    .help(format!(
                        "its sha256 is now {sha256}: if this is the template version you mean to use, pin that; otherwise restore the file the pin was made for"
                    )),
            ));
        }
    }
    let Some(signed) = &rule.signed else {
        return Ok(Verified { sha256, signed_by: None });
    };
    let sig_name = format!("{name}{SIGNATURE_SUFFIX}");
    let mut sig_path = path.as_os_str().to_owned();
    sig_path.push(SIGNATURE_SUFFIX);
    let text = match source::read_text(Path::new(&sig_path)) {
        Ok((_, text)) => text,
        Err(ReadError::NotFound) => {
            return Err(Box::new(
                Diagnostic::error(
                    "duet::include::unsigned",
                    format!("`{name}` is not signed, but this include requires a signature"),
                )
                .at(at, format!("no `{sig_name}` next to it"))
                .related(signed.loc, "signature required here")
                .help(format!(
                    "the template's vendor ships `{sig_name}` with it (`duet sign`): put it next to `{name}`"
                )),
            ));
        }
        Err(e) => return Err(Box::new(bad_signature(rule, &format!("cannot read its signature `{sig_name}`: {e}")))),
    };
    let signature = Signature::decode(&text)
        .map_err(|e| Box::new(bad_signature(rule, &format!("`{sig_name}` is not a minisign signature: {e}"))))?;
    let wanted: Vec<&Key> = match &signed.value {
        Signer::Any => keys.iter().collect(),
        Signer::Named(n) => keys.iter().filter(|k| &k.name == n).collect(),
    };
    for key in &wanted {
        match key.key.verify(&raw, &signature, false) {
            Ok(()) => return Ok(Verified { sha256, signed_by: Some((key.name.clone(), text)) }),
            Err(minisign_verify::Error::UnexpectedKeyId) => {}
            Err(e) => {
                return Err(Box::new(bad_signature(
                    rule,
                    &format!(
                        "its signature by `{}` does not match its content ({e}): it was changed after it was signed",
                        key.name
                    ),
                )));
            }
        }
    }
    let other = keys.iter().find(|k| k.key.verify(&raw, &signature, false).is_ok());
    let (message, help) = match (&signed.value, other) {
        (Signer::Named(n), Some(other)) => (
            format!("`{name}` is signed by `{}`, but this include requires a signature by `{n}`", other.name),
            format!("ask `{n}` for a signed copy, or require `signed: {}` if that key is the vendor's", other.name),
        ),
        (Signer::Named(n), None) if !keys.is_empty() && wanted.is_empty() => (
            format!("this include requires a signature of `{name}` by `{n}`, but no trusted key is named `{n}`"),
            format!("add `{n}`'s public key to `trust:` in the top-level plan, or `{n}.pub` to the --keyring directory"),
        ),
        _ if keys.is_empty() => (
            format!("`{name}` is signed, but no key is trusted to sign templates"),
            "add the vendor's public key to `trust:` in the top-level plan, or put its .pub file in the --keyring directory".to_owned(),
        ),
        _ => (
            format!("`{name}` is signed by a key that is not trusted"),
            "check where the template came from; trust its vendor's key in `trust:` or the --keyring directory only if it is theirs".to_owned(),
        ),
    };
    Err(Box::new(
        Diagnostic::error("duet::include::untrusted-key", message)
            .at(at, "untrusted signature")
            .related(signed.loc, "signature required here")
            .help(help),
    ))
}

fn bad_signature(rule: &Include, why: &str) -> Diagnostic {
    Diagnostic::error("duet::include::bad-signature", format!("`{}` fails its signature check: {why}", rule.file.value))
        .at(rule.file.loc, "signature does not verify")
        .help("do not use this copy: get the template and its .minisig from the vendor again")
}

/// Records that a file already loaded passed another include's check.
pub(crate) fn mark(sources: &mut SourceMap, file: crate::source::FileId, verified: Verified) {
    let slot = &mut sources.get_mut(file).verified;
    match slot {
        Some(old) if old.signed_by.is_some() => {}
        _ => *slot = Some(verified),
    }
}

#[cfg(test)]
mod tests {
    use minisign::KeyPair;

    use super::sha256_hex;
    use crate::compile::{Options, compile};
    use crate::testing::{Tree, expect_at, expect_clean, found};

    const TEMPLATE: &str = "version: 1\nservices: [MSSQLSERVER]\n";

    /// A vendor's key pair: the public key as `trust:` writes it, and a signer.
    struct Vendor {
        pair: KeyPair,
    }

    impl Vendor {
        fn new() -> Self {
            Self { pair: KeyPair::generate_unencrypted_keypair().unwrap() }
        }

        fn public(&self) -> String {
            self.pair.pk.to_base64()
        }

        fn sign(&self, bytes: &[u8]) -> String {
            minisign::sign(Some(&self.pair.pk), &self.pair.sk, bytes, Some("duet test"), None).unwrap().into_string()
        }
    }

    fn site(include: &str, trust: &str) -> String {
        format!("version: 1\ninclude:\n  - {include}\n{trust}")
    }

    fn trusting(vendor: &Vendor, name: &str) -> String {
        format!("trust:\n  - {{name: {name}, key: {}}}\n", vendor.public())
    }

    #[test]
    fn a_pinned_include_with_the_right_hash_loads_and_a_wrong_one_is_refused_at_the_include() {
        let sha = sha256_hex(TEMPLATE.as_bytes());
        let t = Tree::new(&[
            ("site.yaml", &site(&format!("{{file: vendor.yaml, sha256: {}}}", sha.to_uppercase()), "")),
            ("vendor.yaml", TEMPLATE),
        ]);
        let c = t.compile("site.yaml");
        expect_clean(&c);
        assert_eq!(c.compiled.as_ref().unwrap().sources[0].sha256.as_deref(), Some(sha.as_str()));

        let wrong = sha256_hex(b"another version");
        let t = Tree::new(&[
            ("site.yaml", &site(&format!("{{file: vendor.yaml, sha256: {wrong}}}"), "")),
            ("vendor.yaml", TEMPLATE),
        ]);
        let c = t.compile("site.yaml");
        let m = expect_at(&c, "duet::include::hash-mismatch", "site.yaml", 3, 12);
        assert_eq!(m, "`vendor.yaml` does not match the sha256 pinned for it");
        let d = c.diagnostics.iter().find(|d| d.code == "duet::include::hash-mismatch").unwrap();
        assert!(d.help.as_deref().unwrap().contains(&sha), "the help names the file's real hash: {:?}", d.help);
        assert!(c.compiled.is_none());
    }

    #[test]
    fn a_malformed_pin_or_include_is_a_schema_error_and_pins_nothing() {
        let t = Tree::new(&[
            (
                "site.yaml",
                "version: 1\ninclude:\n  - {file: vendor.yaml, sha256: abc, signd: true}\n  - {sha256: abc}\n",
            ),
            ("vendor.yaml", TEMPLATE),
        ]);
        let c = t.compile("site.yaml");
        let m = expect_at(&c, "duet::schema::invalid-value", "site.yaml", 3, 33);
        assert_eq!(m, "`include[1].sha256` must be a SHA-256: 64 hexadecimal digits, found `abc`");
        expect_at(&c, "duet::schema::unknown-key", "site.yaml", 3, 38);
        expect_at(&c, "duet::schema::missing-key", "site.yaml", 4, 6);
        assert!(!found(&c).iter().any(|f| f.code == "duet::include::hash-mismatch"), "{:#?}", found(&c));
    }

    #[test]
    fn a_signed_template_verifies_and_one_changed_byte_fails() {
        let vendor = Vendor::new();
        let plan = site("{file: vendor.yaml, signed: true}", &trusting(&vendor, "Contoso"));
        let sig = vendor.sign(TEMPLATE.as_bytes());
        let t = Tree::new(&[("site.yaml", &plan), ("vendor.yaml", TEMPLATE), ("vendor.yaml.minisig", &sig)]);
        let c = t.compile("site.yaml");
        expect_clean(&c);
        assert_eq!(c.compiled.as_ref().unwrap().sources[0].signed_by.as_deref(), Some("Contoso"));

        let tampered = TEMPLATE.replace("MSSQLSERVER", "MSSQLSERVEX");
        assert_eq!(tampered.len(), TEMPLATE.len());
        let t = Tree::new(&[("site.yaml", &plan), ("vendor.yaml", &tampered), ("vendor.yaml.minisig", &sig)]);
        let c = t.compile("site.yaml");
        let m = expect_at(&c, "duet::include::bad-signature", "site.yaml", 3, 12);
        assert!(m.contains("its signature by `Contoso` does not match its content"), "{m}");
        assert_eq!(
            found(&c).iter().filter(|f| f.file == "vendor.yaml").count(),
            0,
            "a refused template contributes nothing"
        );
    }

    #[test]
    fn a_signature_by_an_untrusted_key_or_none_at_all_is_refused() {
        let (vendor, stranger) = (Vendor::new(), Vendor::new());
        let plan = site("{file: vendor.yaml, signed: true}", &trusting(&vendor, "Contoso"));
        let t = Tree::new(&[
            ("site.yaml", &plan),
            ("vendor.yaml", TEMPLATE),
            ("vendor.yaml.minisig", &stranger.sign(TEMPLATE.as_bytes())),
        ]);
        let m = expect_at(&t.compile("site.yaml"), "duet::include::untrusted-key", "site.yaml", 3, 12);
        assert_eq!(m, "`vendor.yaml` is signed by a key that is not trusted");

        let t = Tree::new(&[("site.yaml", &plan), ("vendor.yaml", TEMPLATE)]);
        let m = expect_at(&t.compile("site.yaml"), "duet::include::unsigned", "site.yaml", 3, 12);
        assert_eq!(m, "`vendor.yaml` is not signed, but this include requires a signature");

        let t = Tree::new(&[("site.yaml", &plan), ("vendor.yaml", TEMPLATE), ("vendor.yaml.minisig", "garbage\n")]);
        expect_at(&t.compile("site.yaml"), "duet::include::bad-signature", "site.yaml", 3, 12);
    }

    #[test]
    fn signed_by_name_requires_that_key_and_the_keyring_directory_is_trusted_too() {
        let (vendor, other) = (Vendor::new(), Vendor::new());
        let trust = format!("{}  - {{name: Fabrikam, key: {}}}\n", trusting(&vendor, "Contoso"), other.public());
        let files = |plan: String| {
            Tree::new(&[
                ("site.yaml", &plan),
                ("vendor.yaml", TEMPLATE),
                ("vendor.yaml.minisig", &other.sign(TEMPLATE.as_bytes())),
                ("keys/Fabrikam.pub", &format!("untrusted comment: minisign public key\n{}\n", other.public())),
            ])
        };
        let t = files(site("{file: vendor.yaml, signed: Contoso}", &trust));
        let m = expect_at(&t.compile("site.yaml"), "duet::include::untrusted-key", "site.yaml", 3, 12);
        assert_eq!(m, "`vendor.yaml` is signed by `Fabrikam`, but this include requires a signature by `Contoso`");

        let t = files(site("{file: vendor.yaml, signed: Fabrikam}", ""));
        let plain = compile(&Options { plan: t.path("site.yaml"), inventory: None, keyring: None });
        let m = expect_at(&plain, "duet::include::untrusted-key", "site.yaml", 3, 12);
        assert_eq!(m, "`vendor.yaml` is signed, but no key is trusted to sign templates");
        let keyring = compile(&Options { plan: t.path("site.yaml"), inventory: None, keyring: Some(t.path("keys")) });
        expect_clean(&keyring);
        let t2 = files(site("{file: vendor.yaml, signed: Initech}", &trusting(&vendor, "Contoso")));
        let m = expect_at(&t2.compile("site.yaml"), "duet::include::untrusted-key", "site.yaml", 3, 12);
        assert_eq!(
            m,
            "this include requires a signature of `vendor.yaml` by `Initech`, but no trusted key is named `Initech`"
        );
        assert_eq!(keyring.compiled.unwrap().sources[0].signed_by.as_deref(), Some("Fabrikam"));
    }

    #[test]
    fn a_diamond_checks_every_include_and_an_included_trust_is_ignored() {
        let vendor = Vendor::new();
        let t = Tree::new(&[
            ("site.yaml", "version: 1\ninclude: [vendor.yaml, mid.yaml]\n"),
            (
                "mid.yaml",
                &format!(
                    "version: 1\ninclude: [{{file: vendor.yaml, sha256: {}}}]\n{}",
                    sha256_hex(b"x"),
                    trusting(&vendor, "Self")
                ),
            ),
            ("vendor.yaml", TEMPLATE),
        ]);
        let c = t.compile("site.yaml");
        expect_at(&c, "duet::include::hash-mismatch", "mid.yaml", 2, 18);
        expect_at(&c, "duet::trust::ignored", "mid.yaml", 4, 23);

        let t = Tree::new(&[("site.yaml", "version: 1\ntrust:\n  - {name: Bad, key: RWQnotakey}\n")]);
        expect_at(&t.compile("site.yaml"), "duet::trust::key", "site.yaml", 3, 22);
    }
}
