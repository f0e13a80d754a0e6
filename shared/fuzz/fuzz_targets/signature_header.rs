//! `Stripe-Signature` parsing and verification on arbitrary input: no panics, and a header we
//! sign ourselves verifies exactly when its timestamp is within tolerance.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shared::stripe::signature::{parse_header, sign_header, verify, SignatureError};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    header: &'a str,
    payload: &'a [u8],
    secret: &'a [u8],
    timestamp: i64,
    now: i64,
    tolerance: i64,
}

fuzz_target!(|input: Input<'_>| {
    // Attacker-controlled header and body: any answer is fine, a panic is not.
    let _ = parse_header(input.header);
    let _ = verify(
        input.payload,
        input.header,
        &[input.secret],
        input.now,
        input.tolerance,
    );

    // Our own signature round-trips and is judged on the timestamp alone.
    let signed = sign_header(input.secret, input.timestamp, input.payload);
    let parsed = parse_header(&signed).expect("a header we produced parses");
    assert_eq!(parsed.timestamp, input.timestamp);
    assert_eq!(parsed.v1.len(), 1);
    let within = input.tolerance <= 0
        || (i128::from(input.now) - i128::from(input.timestamp)).abs()
            <= i128::from(input.tolerance);
    match verify(
        input.payload,
        &signed,
        &[input.secret],
        input.now,
        input.tolerance,
    ) {
        Ok(t) => {
            assert_eq!(t, input.timestamp);
            assert!(within, "accepted a timestamp outside the tolerance");
        }
        Err(SignatureError::TimestampOutOfTolerance) => {
            assert!(!within, "rejected a timestamp within tolerance")
        }
        Err(other) => panic!("our own signature was rejected: {other:?}"),
    }

    // The signature is bound to the body: a changed body never verifies.
    let mut changed = input.payload.to_vec();
    match changed.first_mut() {
        Some(first) => *first ^= 0x01,
        None => changed.push(b'x'),
    }
    assert!(verify(&changed, &signed, &[input.secret], input.timestamp, 0).is_err());
});
