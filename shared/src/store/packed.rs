//! The customer aggregate as stored: its JSON, deflated, in a binary attribute.
//!
//! A write costs one unit per started KB of the item (twice in a transaction), so the aggregate's
//! size is what a webhook costs. Its JSON repeats field names and stamps; deflated it is a
//! quarter of the size, which keeps a typical customer's item under 1 KB. JSON stays the inner
//! format so fields can be added with `#[serde(default)]` as before, and items written as plain
//! JSON strings (by versions before this one) are still read.

use std::io::{Read, Write};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use flate2::Compression;

use super::StoreError;
use crate::projection::CustomerAggregate;

/// The largest inflated aggregate read back: the stored item is at most 400 KB, and JSON this
/// program wrote does not deflate by more than this; anything larger is not ours.
const MAX_INFLATED_BYTES: u64 = 16 * 1024 * 1024;

/// The aggregate as the binary attribute value it is stored as.
pub fn pack(agg: &CustomerAggregate) -> Result<AttributeValue, StoreError> {
    let mut value = serde_json::to_value(agg).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    drop_null_fields(&mut value);
    let json = serde_json::to_vec(&value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut encoder = DeflateEncoder::new(Vec::with_capacity(json.len() / 3), Compression::best());
    encoder
        .write_all(&json)
        .and_then(|_| encoder.finish())
        .map(|bytes| AttributeValue::B(Blob::new(bytes)))
        .map_err(|e| StoreError::Corrupt(format!("aggregate: {e}")))
}

/// Removes every object member whose value is null: they are the aggregate's unset `Option`
/// fields, which read back as `None` when absent (no map of the aggregate has optional values,
/// and array elements are left alone). Most of a customer's fields are unset.
fn drop_null_fields(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(members) => {
            members.retain(|_, v| !v.is_null());
            members.values_mut().for_each(drop_null_fields);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_null_fields),
        _ => {}
    }
}

/// The aggregate from its stored attribute: deflated JSON (binary), or plain JSON (a string, as
/// older versions wrote it).
pub fn unpack(value: &AttributeValue) -> Result<CustomerAggregate, StoreError> {
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("aggregate: {e}"));
    match value {
        AttributeValue::S(json) => serde_json::from_str(json).map_err(|e| corrupt(&e)),
        AttributeValue::B(blob) => {
            let mut json = Vec::new();
            DeflateDecoder::new(blob.as_ref())
                .take(MAX_INFLATED_BYTES + 1)
                .read_to_end(&mut json)
                .map_err(|e| corrupt(&e))?;
            if json.len() as u64 > MAX_INFLATED_BYTES {
                return Err(corrupt(&"inflates past its bound"));
            }
            serde_json::from_slice(&json).map_err(|e| corrupt(&e))
        }
        _ => Err(corrupt(&"neither binary nor a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::testkit::{charge, customer, fold, invoice, price, subscription};

    fn history() -> CustomerAggregate {
        let p = price("price_pro", 4900, "month", "licensed");
        let mut events = vec![
            (
                "customer.created",
                1_700_000_000,
                customer("cus_1", "ada@example.com", 1_700_000_000, false),
            ),
            (
                "customer.subscription.created",
                1_700_000_010,
                subscription(
                    "sub_1",
                    "cus_1",
                    "active",
                    &p,
                    3,
                    1_700_000_010,
                    1_702_600_000,
                    false,
                    None,
                ),
            ),
        ];
        for i in 0..8 {
            let t = 1_700_000_100 + i * 2_592_000;
            events.push((
                "invoice.paid",
                t,
                invoice(&format!("in_{i}"), "cus_1", "paid", 1, t, 14_700),
            ));
            events.push((
                "charge.succeeded",
                t,
                charge(&format!("ch_{i}"), Some("cus_1"), "succeeded", 14_700, 0, t),
            ));
        }
        let mut agg = fold(&events);
        // Charges are items of their own, never part of the stored aggregate.
        agg.charges.clear();
        agg
    }

    #[test]
    fn a_packed_aggregate_reads_back_equal_and_much_smaller() {
        let agg = history();
        let packed = pack(&agg).unwrap();
        assert_eq!(unpack(&packed).unwrap(), agg);
        let json = serde_json::to_vec(&agg).unwrap().len();
        let bytes = packed.as_b().unwrap().as_ref().len();
        assert!(bytes * 2 < json, "{bytes} bytes packed from {json}");
    }

    #[test]
    fn an_aggregate_stored_as_plain_json_is_still_read() {
        let agg = history();
        let legacy = AttributeValue::S(serde_json::to_string(&agg).unwrap());
        assert_eq!(unpack(&legacy).unwrap(), agg);
    }

    #[test]
    fn bytes_that_are_not_a_packed_aggregate_are_corrupt_not_a_panic() {
        for value in [
            AttributeValue::B(Blob::new(b"not deflate".to_vec())),
            AttributeValue::S("{not json".into()),
            AttributeValue::N("1".into()),
        ] {
            assert!(matches!(unpack(&value), Err(StoreError::Corrupt(_))));
        }
        // Valid deflate of something that is not an aggregate.
        let mut encoder = DeflateEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(b"[1,2,3]").unwrap();
        let value = AttributeValue::B(Blob::new(encoder.finish().unwrap()));
        assert!(matches!(unpack(&value), Err(StoreError::Corrupt(_))));
    }
}
