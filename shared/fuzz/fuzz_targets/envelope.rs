//! Event envelope parsing on arbitrary bytes: no panics, and whatever parses is a sane event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::stripe::envelope::{envelope_from_value, parse_envelope, EventEnvelope};

fuzz_target!(|data: &[u8]| {
    let Ok(env) = parse_envelope(data) else {
        return;
    };
    assert!(env.id.starts_with("evt_") && env.id.len() > 4);
    assert!(!env.event_type.is_empty());
    let _ = (env.object_id(), env.object_kind());

    // Parsing the same JSON as a value gives the same envelope.
    let value: serde_json::Value =
        serde_json::from_slice(data).expect("parse_envelope accepted it as JSON");
    assert_eq!(envelope_from_value(value).as_ref(), Ok(&env));

    // The envelope serializes and reads back (the queue may carry it).
    let json = serde_json::to_string(&env).expect("an envelope serializes");
    let back: EventEnvelope = serde_json::from_str(&json).expect("and reads back");
    assert_eq!(back.id, env.id);
    assert_eq!(back.created, env.created);
});
