//! The YAML loader (crate `portcullis-yaml`: `Doc::parse`, `Doc::deserialize`) and the rule-file
//! compiler (`rulefile::compile_with`) over any text.
//!
//! Properties: no panic (the parser runs on its own thread with a bounded nesting gate: a hang
//! or a stack overflow is a finding too); every error names the file and a line inside it (or
//! the line after the last); compiling is deterministic (same version, or the same errors).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_rules::rulefile::{compile_with, AssetRef, Env, SourceFile};
use portcullis_yaml::{self as yaml, ConfigError};

const FILE: &str = "fuzz.yaml";
const SECRET: &str = "0123456789abcdef0123456789abcdef-hs256-test-secret";
const RSA_PUB: &str = include_str!("../../tests/fixtures/jwt/rsa1.pub.pem");
const EC_PUB: &str = include_str!("../../tests/fixtures/jwt/ec1.pub.pem");

fn check_errors(text: &str, errors: &[ConfigError]) {
    assert!(!errors.is_empty(), "an Err without errors");
    // YAML line breaks are CR LF, LF and a lone CR; an error may point just past the last line
    // (the end of the document).
    let lines = 2 + text.replace("\r\n", "\n").bytes().filter(|&b| b == b'\n' || b == b'\r').count();
    for e in errors {
        assert_eq!(e.file, FILE, "error names another file: {e}");
        assert!(e.line >= 1 && e.line <= lines, "error line {} outside 1..={lines}: {e}", e.line);
        assert!(!e.message.is_empty(), "empty message");
    }
}

fn compile(text: &str) -> Result<String, Vec<String>> {
    let resolve = |r: &AssetRef| match r {
        AssetRef::Env(v) if v.starts_with("SECRET") => Ok(SECRET.as_bytes().to_vec()),
        AssetRef::File(f) if f.ends_with("rsa.pem") => Ok(RSA_PUB.as_bytes().to_vec()),
        AssetRef::File(f) if f.ends_with("ec.pem") => Ok(EC_PUB.as_bytes().to_vec()),
        AssetRef::File(f) if f.ends_with(".txt") => Ok(SECRET.as_bytes().to_vec()),
        other => Err(format!("{other} not found")),
    };
    let routes = ["api", "admin", "public", "webhooks"];
    let env = Env { routes: Some(&routes), assets: Some(&resolve), sinks: None };
    match compile_with(&[SourceFile::new(FILE, text)], &env) {
        Ok(s) => Ok(s.version),
        Err(e) => {
            check_errors(text, &e);
            Err(e.iter().map(ToString::to_string).collect())
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match yaml::Doc::parse(FILE, text) {
        Ok(doc) => {
            for p in doc.problems() {
                check_errors(text, std::slice::from_ref(p));
            }
            if let Err(e) = doc.deserialize::<serde_json::Value>() {
                check_errors(text, &e);
            }
        }
        Err(e) => check_errors(text, &e),
    }
    let first = compile(text);
    assert_eq!(compile(text), first, "compiling twice gave different answers");
});
