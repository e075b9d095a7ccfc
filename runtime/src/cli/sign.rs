//! `duet keygen` and `duet sign`: what a vendor needs to ship a signed template. The keys and
//! signatures are minisign's (made by the `minisign` crate, the reference implementation's
//! Rust port), so the `minisign` tool signs and verifies them too: `minisign -S -s NAME.key
//! -m FILE` makes the same `FILE.minisig`, `minisign -V -p NAME.pub -m FILE` checks one.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use duet_compiler::source::MAX_FILE_BYTES;
use duet_compiler::trust::{PUBLIC_KEY_SUFFIX, SIGNATURE_SUFFIX, sha256_hex};
use minisign::{KeyPair, PublicKey, SecretKeyBox};

use crate::error::{Error, Result};
use crate::outcome::Outcome;
use crate::store::fsutil;
use crate::view::console;

/// The secret key's file name suffix.
const SECRET_KEY_SUFFIX: &str = ".key";

fn finish(done: Result<String>) -> Outcome {
    match done {
        Ok(said) => console::print(&said),
        Err(e) => {
            console::eprintln(&e.report(None));
            Outcome::Failure
        }
    }
}

pub(crate) fn keygen(out: &Path) -> Outcome {
    finish(make_keys(out))
}

pub(crate) fn sign(file: &Path, key: &Path, comment: Option<&str>) -> Outcome {
    finish(sign_file(file, key, comment))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn make_keys(out: &Path) -> Result<String> {
    let (secret, public) = (with_suffix(out, SECRET_KEY_SUFFIX), with_suffix(out, PUBLIC_KEY_SUFFIX));
    for path in [&secret, &public] {
        if path.exists() {
            return Err(Error::new(format!("{} already exists", path.display())).help(
                "duet never overwrites a key: choose another name, or remove the old key if it is really unused",
            ));
        }
    }
    let pair = KeyPair::generate_unencrypted_keypair().map_err(|e| {
        Error::new(format!("cannot make a key pair: {e}")).help("check that the system's random source works")
    })?;
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let secret_text = pair
        .sk
        .to_box(Some(&format!("duet secret key {name}")))
        .map_err(|e| Error::new(format!("cannot encode the secret key: {e}")))?
        .into_string();
    let public_text =
        pair.pk.to_box().map_err(|e| Error::new(format!("cannot encode the public key: {e}")))?.into_string();
    let write_failed = |path: &Path, e: std::io::Error| {
        Error::new(format!("cannot write {}: {e}", path.display())).help("check the directory exists and is writable")
    };
    fsutil::write_new_private(&secret, secret_text.as_bytes()).map_err(|e| write_failed(&secret, e))?;
    if let Err(e) = fsutil::write_atomic(&public, public_text.as_bytes()) {
        let _ = std::fs::remove_file(&secret);
        return Err(write_failed(&public, e));
    }
    Ok(format!(
        "wrote {} (secret: keep it off the machines you upgrade) and {}\nsites trust it with:\n  trust:\n    - {{name: {name}, key: {}}}\n",
        secret.display(),
        public.display(),
        pair.pk.to_base64()
    ))
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    fsutil::read_regular(path, MAX_FILE_BYTES).map_err(|e| {
        Error::new(format!("cannot read the {what} {}: {e}", path.display())).help("check the path and its permissions")
    })
}

fn sign_file(file: &Path, key: &Path, comment: Option<&str>) -> Result<String> {
    let key_text = String::from_utf8(read(key, "secret key")?).unwrap_or_default();
    let not_a_key = |e: minisign::PError| {
        Error::new(format!("{} is not a usable minisign secret key: {e}", key.display()))
            .help("name the NAME.key file `duet keygen` wrote (a password-protected minisign key: sign with `minisign -S -s KEY -m FILE`)")
    };
    let sk =
        SecretKeyBox::from_string(&key_text).and_then(SecretKeyBox::into_unencrypted_secret_key).map_err(not_a_key)?;
    let pk = PublicKey::from_secret_key(&sk).map_err(not_a_key)?;
    let bytes = read(file, "template")?;
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let trusted = comment.map_or_else(|| format!("file:{name}"), str::to_owned);
    let signature = minisign::sign(Some(&pk), &sk, Cursor::new(&bytes), Some(&trusted), None)
        .map_err(|e| Error::new(format!("cannot sign {}: {e}", file.display())))?;
    let out = with_suffix(file, SIGNATURE_SUFFIX);
    fsutil::write_atomic(&out, signature.into_string().as_bytes()).map_err(|e| {
        Error::new(format!("cannot write {}: {e}", out.display())).help("check the directory is writable")
    })?;
    Ok(format!("wrote {}\nsha256 {}\n", out.display(), sha256_hex(&bytes)))
}
