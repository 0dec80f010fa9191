//! The offline commands, `sign` and `verify`: no configuration, no database; the body comes
//! from standard input. Uses `crate::signing`, `crate::verify` and `crate::secrets` (the
//! secret format).

use std::process::ExitCode;

use anyhow::Context as _;

/// Reads all of standard input.
fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut body)?;
    Ok(body)
}

/// The key bytes of a secret given as 64 hex characters or `whsec_…`.
fn secret_key(text: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine as _;
    if let Some(encoded) = text.strip_prefix("whsec_") {
        // Not the decoder's message: it would quote a character of the secret.
        return base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| anyhow::anyhow!("whsec_ must be followed by base64"));
    }
    let secret = crate::secrets::SigningSecret::parse(text)
        .ok_or_else(|| anyhow::anyhow!("a secret is 64 lowercase hex characters or whsec_…"))?;
    Ok(secret.key().to_vec())
}

pub(super) fn sign(
    secret: &str,
    pending: Option<&str>,
    scheme: crate::signing::Scheme,
    id: &str,
    timestamp: Option<i64>,
) -> anyhow::Result<ExitCode> {
    let active = secret_key(secret).context("the active secret")?;
    let pending = pending
        .map(secret_key)
        .transpose()
        .context("the pending secret")?;
    let body = read_stdin()?;
    let keys = crate::signing::SigningKeys {
        active: &active,
        pending: pending.as_deref(),
    };
    let timestamp = timestamp.unwrap_or_else(|| chrono::Utc::now().timestamp());
    for (name, value) in crate::signing::signature_headers(scheme, &keys, &body, id, timestamp) {
        println!("{name}: {value}");
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn verify(
    scheme: crate::verify::Scheme,
    secrets: &[String],
    headers: &[String],
    now: Option<i64>,
) -> anyhow::Result<ExitCode> {
    let verifier = crate::verify::Verifier::new(secrets)?;
    let mut pairs = Vec::new();
    for header in headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("--header takes `Name: value`, got {header:?}"))?;
        pairs.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let body = read_stdin()?;
    let now = now.unwrap_or_else(|| chrono::Utc::now().timestamp());
    match verifier.verify(scheme, pairs.as_slice(), &body, now) {
        Ok(matched) => {
            println!(
                "valid: secret #{} matched ({:?} header)",
                matched.secret_index + 1,
                matched.header
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(reason) => {
            eprintln!("invalid: {reason}");
            Ok(ExitCode::FAILURE)
        }
    }
}
