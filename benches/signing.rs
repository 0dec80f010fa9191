//! Micro benchmarks: signing against a bare HMAC-SHA256 of the same bytes, verification, token
//! parsing and hashing, and the rotation state machine. `cargo bench --bench signing`.

use chrono::{Duration, Utc};
use divan::{black_box, Bencher};
use hmac::{Hmac, Mac};
use hooksign::ids::SecretId;
use hooksign::keys::{ApiToken, Mode, TokenKind};
use hooksign::secrets::rotation::{apply, Command, RotationState, Slot};
use hooksign::signing::{signature_headers, Scheme, SigningKeys};
use hooksign::verify::Verifier;
use sha2::Sha256;

const SIZES: [usize; 4] = [64, 1024, 64 * 1024, 1024 * 1024];
const ACTIVE: &str = "3f1c2a9e8b7d6c5f4e3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e";
const PENDING: &str = "a0b1c2d3e4f5061728394a5b6c7d8e9fa0b1c2d3e4f5061728394a5b6c7d8e9f";

fn main() {
    divan::main();
}

fn body(size: usize) -> Vec<u8> {
    (0..size).map(|i| b"{\"a\":1}"[i % 7]).collect()
}

/// The floor: one HMAC-SHA256 over the body, no encoding.
#[divan::bench(args = SIZES)]
fn bare_hmac(bencher: Bencher, size: usize) {
    let body = body(size);
    bencher.bench(|| {
        let mut mac = Hmac::<Sha256>::new_from_slice(ACTIVE.as_bytes()).unwrap();
        mac.update(black_box(&body));
        mac.finalize().into_bytes()
    });
}

fn sign(bencher: Bencher, size: usize, scheme: Scheme, pending: bool) {
    let body = body(size);
    let keys = SigningKeys {
        active: ACTIVE.as_bytes(),
        pending: pending.then_some(PENDING.as_bytes()),
    };
    bencher.bench(|| signature_headers(scheme, &keys, black_box(&body), "evt_01", 1_763_942_400));
}

/// `X-Bolt-Hmac-Sha256` (one HMAC + base64).
#[divan::bench(args = SIZES)]
fn sign_bolt(bencher: Bencher, size: usize) {
    sign(bencher, size, Scheme::Bolt, false);
}

/// Bolt during a rotation: two HMACs.
#[divan::bench(args = SIZES)]
fn sign_bolt_rotation_pending(bencher: Bencher, size: usize) {
    sign(bencher, size, Scheme::Bolt, true);
}

/// Standard Webhooks (`{id}.{timestamp}.{body}`).
#[divan::bench(args = SIZES)]
fn sign_standard(bencher: Bencher, size: usize) {
    sign(bencher, size, Scheme::Standard, false);
}

/// Both header sets.
#[divan::bench(args = SIZES)]
fn sign_both(bencher: Bencher, size: usize) {
    sign(bencher, size, Scheme::Both, false);
}

/// A receiver holding old and new secrets checks a bolt delivery signed with the new one.
#[divan::bench(args = [1024])]
fn verify_bolt_two_secrets(bencher: Bencher, size: usize) {
    let body = body(size);
    let keys = SigningKeys {
        active: PENDING.as_bytes(),
        pending: None,
    };
    let headers = signature_headers(Scheme::Bolt, &keys, &body, "evt_01", 0);
    let headers: Vec<(String, String)> = headers
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v))
        .collect();
    let verifier = Verifier::new([ACTIVE, PENDING]).unwrap();
    bencher.bench(|| {
        verifier
            .verify_bolt(headers.as_slice(), black_box(&body))
            .unwrap()
    });
}

/// Format and checksum check of a presented API token (no database).
#[divan::bench]
fn token_parse(bencher: Bencher) {
    let token = ApiToken::generate(TokenKind::Merchant(Mode::Live))
        .expose()
        .to_owned();
    bencher.bench(|| ApiToken::parse(black_box(&token)).unwrap());
}

/// SHA-256 of a token: the database lookup key.
#[divan::bench]
fn token_hash(bencher: Bencher) {
    let token = ApiToken::generate(TokenKind::Merchant(Mode::Live));
    bencher.bench(|| black_box(&token).hash());
}

/// One rotation transition (complete with a previous secret to destroy).
#[divan::bench]
fn rotation_complete(bencher: Bencher) {
    let now = Utc::now();
    let slot = || Slot {
        id: SecretId::new(),
        created_at: now,
    };
    let state = RotationState {
        active: slot(),
        pending: Some(hooksign::secrets::rotation::Pending {
            slot: slot(),
            complete_at: None,
        }),
        previous: Some(hooksign::secrets::rotation::Previous {
            slot: slot(),
            revert_until: now,
        }),
    };
    bencher.bench(|| {
        apply(
            black_box(&state),
            Command::Complete,
            now,
            Duration::hours(48),
        )
        .unwrap()
    });
}
