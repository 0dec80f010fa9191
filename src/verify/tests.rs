//! Tests of the verifier and the primitives against the shared vectors, plus the properties
//! (tampering, truncation, arbitrary input) no vector can cover.

use super::test_vectors::{bolt_cases, reference_vector, standard_cases, StandardCase};
use super::verifier::parse_secret;
use super::*;
use proptest::prelude::*;

const ACTIVE: &str = "3f1c2a9e8b7d6c5f4e3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e";
const OTHER: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn verifier(secrets: &[&str]) -> Verifier {
    Verifier::new(secrets).expect("valid secrets")
}

fn matched(secret_index: usize, header: MatchedHeader) -> Result<Match, VerifyError> {
    Ok(Match {
        secret_index,
        header,
    })
}

fn standard_headers(c: &StandardCase, signature: &str) -> Vec<(String, String)> {
    vec![
        (WEBHOOK_ID.into(), c.webhook_id.clone()),
        (WEBHOOK_TIMESTAMP.into(), c.webhook_timestamp.to_string()),
        (WEBHOOK_SIGNATURE.into(), signature.to_owned()),
    ]
}

#[test]
fn primitives_reproduce_every_vector() {
    for c in bolt_cases() {
        let rotation = &c.headers_during_rotation;
        let active = bolt_signature(c.active_secret.as_bytes(), &c.body);
        let pending = bolt_signature(c.pending_secret.as_bytes(), &c.body);
        assert_eq!(
            c.headers_active_only,
            [(BOLT_SIGNATURE.into(), active.clone())]
        );
        assert_eq!(
            rotation.header(BOLT_SIGNATURE),
            Some(active.as_str()),
            "{}",
            c.name
        );
        assert_eq!(
            rotation.header(BOLT_SIGNATURE_PENDING),
            Some(pending.as_str())
        );
    }
    for c in standard_cases() {
        let sign = |secret: &str| {
            standard_signature(
                secret.as_bytes(),
                &c.webhook_id,
                c.webhook_timestamp,
                &c.body,
            )
        };
        assert_eq!(
            sign(&c.active_secret),
            c.signature_active_only,
            "{}",
            c.name
        );
        let both = format!("{} {}", sign(&c.active_secret), sign(&c.pending_secret));
        assert_eq!(both, c.signature_during_rotation, "{}", c.name);
        assert_eq!(whsec(c.active_secret.as_bytes()), c.active_secret_whsec);
    }
}

#[test]
fn reference_vector_signs_and_verifies_with_its_whsec_secret() {
    let r = reference_vector();
    let key = parse_secret(&r.secret).expect("whsec secret");
    let signature = standard_signature(&key, &r.webhook_id, r.webhook_timestamp, &r.body);
    assert_eq!(signature, r.signature);
    assert_eq!(whsec(&key), r.secret);
    let headers = [
        (WEBHOOK_ID, r.webhook_id.as_str()),
        (WEBHOOK_TIMESTAMP, &r.webhook_timestamp.to_string()),
        (WEBHOOK_SIGNATURE, &r.signature),
    ];
    let result = verifier(&[&r.secret]).verify_standard(&headers, &r.body, r.webhook_timestamp);
    assert_eq!(result, matched(0, MatchedHeader::Standard));
}

#[test]
fn bolt_vectors_verify_with_each_secret_alone_and_together() {
    for c in bolt_cases() {
        let (active, pending) = (c.active_secret.as_str(), c.pending_secret.as_str());
        let only = &c.headers_active_only;
        let rotation = &c.headers_during_rotation;
        let bolt = MatchedHeader::Bolt;
        assert_eq!(
            verifier(&[active]).verify_bolt(only, &c.body),
            matched(0, bolt)
        );
        assert_eq!(
            verifier(&[OTHER, active]).verify_bolt(only, &c.body),
            matched(1, bolt)
        );
        assert_eq!(
            verifier(&[active]).verify_bolt(rotation, &c.body),
            matched(0, bolt)
        );
        let pending_only = verifier(&[pending]).verify_bolt(rotation, &c.body);
        assert_eq!(
            pending_only,
            matched(0, MatchedHeader::BoltPending),
            "{}",
            c.name
        );
        let both = verifier(&[pending, active]).verify_bolt(rotation, &c.body);
        assert_eq!(both, matched(0, MatchedHeader::BoltPending));
        let both = verifier(&[active, pending]).verify_bolt(rotation, &c.body);
        assert_eq!(both, matched(0, bolt));
        let new_secret_before_rotation = verifier(&[pending]).verify_bolt(only, &c.body);
        assert_eq!(new_secret_before_rotation, Err(VerifyError::NoMatch));
    }
}

#[test]
fn verify_checks_every_vector_under_its_own_scheme_only() {
    for c in bolt_cases() {
        let v = verifier(&[&c.active_secret]);
        let rotation = &c.headers_during_rotation;
        let bolt = v.verify(Scheme::Bolt, rotation, &c.body, 0);
        assert_eq!(bolt, matched(0, MatchedHeader::Bolt), "{}", c.name);
        // Valid X-Bolt headers do not satisfy a Standard receiver: no silent downgrade.
        let standard = v.verify(Scheme::Standard, rotation, &c.body, 0);
        assert_eq!(standard, Err(VerifyError::MissingHeader(WEBHOOK_ID)));
    }
    for c in standard_cases() {
        let v = verifier(&[&c.pending_secret]);
        let now = c.webhook_timestamp;
        let headers = standard_headers(&c, &c.signature_during_rotation);
        let standard = v.verify(Scheme::Standard, &headers, &c.body, now);
        assert_eq!(standard, matched(0, MatchedHeader::Standard), "{}", c.name);
        let stale = v.verify(Scheme::Standard, &headers, &c.body, now + 301);
        assert!(matches!(stale, Err(VerifyError::StaleTimestamp { .. })));
        let bolt = v.verify(Scheme::Bolt, &headers, &c.body, now);
        assert_eq!(bolt, Err(VerifyError::MissingHeader(BOLT_SIGNATURE)));
    }
}

#[test]
fn a_delivery_stripped_of_its_webhook_headers_is_refused_by_a_standard_receiver() {
    // A `both` endpoint (or a bolt endpoint of the same merchant) sends the same body with
    // X-Bolt headers; with the webhook-* headers stripped it must not verify as standard.
    let body = br#"{"id":"evt_1","object":"event"}"#;
    let bolt = bolt_signature(ACTIVE.as_bytes(), body);
    let stripped = [(BOLT_SIGNATURE, bolt.as_str())];
    let v = verifier(&[ACTIVE]);
    assert!(v.verify(Scheme::Bolt, &stripped, body, 0).is_ok());
    let refused = v.verify(Scheme::Standard, &stripped, body, 0);
    assert_eq!(refused, Err(VerifyError::MissingHeader(WEBHOOK_ID)));
}

#[test]
fn scheme_names_parse_exactly_and_there_is_no_auto() {
    for scheme in Scheme::ALL {
        assert_eq!(scheme.as_str().parse(), Ok(scheme));
        assert_eq!(scheme.to_string(), scheme.as_str());
    }
    for bad in ["auto", "both", "Bolt", " standard", ""] {
        let err = bad.parse::<Scheme>().unwrap_err();
        assert_eq!(err, UnknownScheme(bad.to_owned()));
        assert!(
            err.to_string().contains("expected bolt or standard"),
            "{err}"
        );
    }
}

#[test]
fn bolt_header_names_are_case_insensitive_and_values_trimmed() {
    let body = b"{}";
    let value = format!(" {} ", bolt_signature(ACTIVE.as_bytes(), body));
    let headers = [("x-bolt-hmac-sha256", value.as_str())];
    assert_eq!(
        verifier(&[ACTIVE]).verify_bolt(&headers, body),
        matched(0, MatchedHeader::Bolt)
    );
}

#[test]
fn bolt_tampered_body_is_rejected() {
    for c in bolt_cases() {
        let mut body = c.body.clone();
        body.push(b' ');
        let v = verifier(&[&c.active_secret, &c.pending_secret]);
        assert_eq!(
            v.verify_bolt(&c.headers_during_rotation, &body),
            Err(VerifyError::NoMatch)
        );
    }
}

#[test]
fn bolt_missing_empty_and_garbled_headers_are_rejected() {
    let body = b"{\"a\":1}";
    let good = bolt_signature(ACTIVE.as_bytes(), body);
    let v = verifier(&[ACTIVE]);
    let check = |headers: &[(&str, &str)]| v.verify_bolt(headers, body);
    let missing = Err(VerifyError::MissingHeader(BOLT_SIGNATURE));
    assert_eq!(check(&[]), missing);
    assert_eq!(
        check(&[(BOLT_SIGNATURE, ""), (BOLT_SIGNATURE_PENDING, "  ")]),
        missing
    );
    assert_eq!(check(&[("X-Other", &good)]), missing);
    let malformed = Err(VerifyError::Malformed(BOLT_SIGNATURE));
    for bad in [
        &good[..43],
        &good[..10],
        "not base64 at all!",
        &format!("{good}A"),
    ] {
        assert_eq!(check(&[(BOLT_SIGNATURE, bad)]), malformed, "{bad}");
    }
    let unpadded = good.trim_end_matches('=');
    assert_eq!(check(&[(BOLT_SIGNATURE, unpadded)]), malformed);
    assert_eq!(
        check(&[(BOLT_SIGNATURE_PENDING, "%%%")]),
        Err(VerifyError::Malformed(BOLT_SIGNATURE_PENDING))
    );
    let flipped = format!(
        "{}{}",
        if good.starts_with('A') { 'B' } else { 'A' },
        &good[1..]
    );
    assert_eq!(
        check(&[(BOLT_SIGNATURE, &flipped)]),
        Err(VerifyError::NoMatch)
    );
    // A garbled active header does not hide a valid pending one, and vice versa.
    let pending = [(BOLT_SIGNATURE, "garbage"), (BOLT_SIGNATURE_PENDING, &good)];
    assert_eq!(check(&pending), matched(0, MatchedHeader::BoltPending));
    let active = [
        (BOLT_SIGNATURE, good.as_str()),
        (BOLT_SIGNATURE_PENDING, "x"),
    ];
    assert_eq!(check(&active), matched(0, MatchedHeader::Bolt));
}

#[test]
fn standard_vectors_verify_with_hex_and_whsec_secrets() {
    for c in standard_cases() {
        let now = c.webhook_timestamp;
        let only = standard_headers(&c, &c.signature_active_only);
        let rotation = standard_headers(&c, &c.signature_during_rotation);
        let std = MatchedHeader::Standard;
        for secret in [&c.active_secret, &c.active_secret_whsec] {
            let v = verifier(&[secret]);
            assert_eq!(
                v.verify_standard(&only, &c.body, now),
                matched(0, std),
                "{}",
                c.name
            );
            assert_eq!(v.verify_standard(&rotation, &c.body, now), matched(0, std));
        }
        let pending = verifier(&[&c.pending_secret]);
        assert_eq!(
            pending.verify_standard(&rotation, &c.body, now),
            matched(0, std)
        );
        let not_yet = pending.verify_standard(&only, &c.body, now);
        assert_eq!(not_yet, Err(VerifyError::NoMatch));
        let both = verifier(&[OTHER, &c.pending_secret, &c.active_secret]);
        assert_eq!(
            both.verify_standard(&rotation, &c.body, now),
            matched(1, std)
        );
    }
}

#[test]
fn standard_tampered_body_id_or_timestamp_is_rejected() {
    for c in standard_cases() {
        let v = verifier(&[&c.active_secret]);
        let now = c.webhook_timestamp;
        let headers = standard_headers(&c, &c.signature_active_only);
        let mut body = c.body.clone();
        body.extend_from_slice(b"\n");
        assert_eq!(
            v.verify_standard(&headers, &body, now),
            Err(VerifyError::NoMatch)
        );
        let mut other_id = headers.clone();
        other_id[0].1.push('x');
        assert_eq!(
            v.verify_standard(&other_id, &c.body, now),
            Err(VerifyError::NoMatch)
        );
        let mut other_ts = headers.clone();
        other_ts[1].1 = (now + 1).to_string();
        assert_eq!(
            v.verify_standard(&other_ts, &c.body, now),
            Err(VerifyError::NoMatch)
        );
    }
}

#[test]
fn standard_timestamps_outside_the_tolerance_are_stale_in_both_directions() {
    let c = &standard_cases()[0];
    let ts = c.webhook_timestamp;
    let headers = standard_headers(c, &c.signature_active_only);
    let v = verifier(&[&c.active_secret]);
    assert!(v.verify_standard(&headers, &c.body, ts + 300).is_ok());
    assert!(v.verify_standard(&headers, &c.body, ts - 300).is_ok());
    for now in [ts + 301, ts - 301, 0, i64::MIN, i64::MAX] {
        let stale = Err(VerifyError::StaleTimestamp { timestamp: ts, now });
        assert_eq!(v.verify_standard(&headers, &c.body, now), stale);
    }
    let strict = v.with_tolerance(Duration::from_secs(10));
    assert!(strict.verify_standard(&headers, &c.body, ts + 10).is_ok());
    assert!(strict.verify_standard(&headers, &c.body, ts + 11).is_err());
}

#[test]
fn standard_missing_and_malformed_headers_are_rejected() {
    let c = &standard_cases()[0];
    let (v, now) = (verifier(&[&c.active_secret]), c.webhook_timestamp);
    let sig = c.signature_active_only.as_str();
    let check = |signature: &str| v.verify_standard(&standard_headers(c, signature), &c.body, now);
    let malformed = Err(VerifyError::Malformed(WEBHOOK_SIGNATURE));
    for bad in [
        "v2,abc",
        "v1,",
        "v1,short",
        "v1a,xyz v2,abc",
        &sig[1..],
        &sig[..46],
    ] {
        assert_eq!(check(bad), malformed, "{bad}");
    }
    assert_eq!(
        check(""),
        Err(VerifyError::MissingHeader(WEBHOOK_SIGNATURE))
    );
    let std = matched(0, MatchedHeader::Standard);
    assert_eq!(check(&format!("v1a,ignored v1,garbage  {sig}")), std);
    for (i, name) in [WEBHOOK_ID, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE]
        .into_iter()
        .enumerate()
    {
        let mut headers = standard_headers(c, sig);
        headers.remove(i);
        let missing = Err(VerifyError::MissingHeader(name));
        assert_eq!(v.verify_standard(&headers, &c.body, now), missing);
    }
    for ts in [
        "abc",
        "+1763942400",
        "01763942400",
        "-5",
        "1.5",
        "99999999999999999999",
    ] {
        let mut headers = standard_headers(c, sig);
        headers[1].1 = ts.to_owned();
        let malformed = Err(VerifyError::Malformed(WEBHOOK_TIMESTAMP));
        assert_eq!(v.verify_standard(&headers, &c.body, now), malformed, "{ts}");
    }
}

#[test]
fn invalid_secret_lists_are_refused() {
    assert_eq!(
        Verifier::new(Vec::<String>::new()).err(),
        Some(VerifyError::NoSecrets)
    );
    let upper = ACTIVE.to_ascii_uppercase();
    let newline = format!("{ACTIVE}\n");
    for bad in [
        "",
        "whsec_",
        "whsec_!!!",
        &upper,
        &ACTIVE[1..],
        &newline,
        "g".repeat(64).as_str(),
    ] {
        assert_eq!(
            Verifier::new([ACTIVE, bad]).err(),
            Some(VerifyError::InvalidSecret)
        );
    }
}

#[test]
fn debug_output_redacts_keys() {
    let printed = format!(
        "{:?}",
        verifier(&[ACTIVE, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
    );
    assert!(printed.contains("2 redacted"), "{printed}");
    // Neither the secret text nor the key bytes (`[51, 102, ...]`) may leak.
    assert!(
        !printed.contains(&ACTIVE[..8]) && !printed.contains("[51,"),
        "{printed}"
    );
}

#[test]
fn errors_explain_themselves() {
    let stale = VerifyError::StaleTimestamp {
        timestamp: 1,
        now: 400,
    };
    assert_eq!(
        stale.to_string(),
        "webhook timestamp 1 is outside the tolerance around now (400)"
    );
    let missing = VerifyError::MissingHeader(BOLT_SIGNATURE).to_string();
    assert_eq!(missing, "missing signature header X-Bolt-Hmac-Sha256");
    let boxed: Box<dyn std::error::Error> = Box::new(VerifyError::NoMatch);
    assert_eq!(
        boxed.to_string(),
        "no signature matches any configured secret"
    );
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(BOLT_SIGNATURE.to_owned()),
        Just(BOLT_SIGNATURE_PENDING.to_ascii_lowercase()),
        Just(WEBHOOK_ID.to_owned()),
        Just(WEBHOOK_TIMESTAMP.to_owned()),
        Just(WEBHOOK_SIGNATURE.to_owned()),
        any::<String>(),
    ]
}

proptest! {
    #[test]
    fn arbitrary_headers_and_bodies_never_panic(
        headers in proptest::collection::vec((header_name(), any::<String>()), 0..6),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        now in any::<i64>(),
    ) {
        let v = verifier(&[ACTIVE]);
        // Random input must be refused (a forged match is a 2^-256 event), never panic.
        prop_assert!(v.verify_bolt(&headers, &body).is_err());
        prop_assert!(v.verify_standard(&headers, &body, now).is_err());
    }

    #[test]
    fn truncated_signatures_are_never_accepted(
        body in proptest::collection::vec(any::<u8>(), 0..64),
        cut in 0usize..47,
        timestamp in 0i64..4_000_000_000,
    ) {
        let v = verifier(&[ACTIVE]);
        let bolt = bolt_signature(ACTIVE.as_bytes(), &body);
        let prefix = &bolt[..cut.min(bolt.len() - 1)];
        let headers = [(BOLT_SIGNATURE, prefix), (BOLT_SIGNATURE_PENDING, prefix)];
        prop_assert!(v.verify_bolt(&headers, &body).is_err());

        let standard = standard_signature(ACTIVE.as_bytes(), "msg_1", timestamp, &body);
        let prefix = &standard[..cut.min(standard.len() - 1)];
        let ts = timestamp.to_string();
        let headers = [(WEBHOOK_ID, "msg_1"), (WEBHOOK_TIMESTAMP, &ts), (WEBHOOK_SIGNATURE, prefix)];
        prop_assert!(v.verify_standard(&headers, &body, timestamp).is_err());
    }
}
