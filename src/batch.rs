//! Batching: encoded elements into request bodies, sized on the exact bytes that go on the wire.
//!
//! Bulk Import bodies are `{"type":"transition","elements":[e1,e2,…]}` with at most
//! `BATCH_MAX_RECORDS` elements and `BATCH_MAX_BYTES` bytes; Track User and Create Event bodies are
//! one element each, at most [`SINGLE_REQUEST_MAX_BYTES`].

use crate::model::{ObjectType, SINGLE_REQUEST_MAX_BYTES};
use crate::sync_state::{customer_id_of, RowPrint};

const TRANSITION_PREFIX: &[u8] = b"{\"type\":\"transition\",\"elements\":[";
const TRANSITION_SUFFIX: &[u8] = b"]}";

pub use crate::model::Endpoint;

/// One request body ready to send, with the rows it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub endpoint: Endpoint,
    /// The exact bytes to POST (and, if it cannot be delivered, to dead-letter).
    pub body: Vec<u8>,
    /// Number of rows (elements) in the body.
    pub records: u64,
    /// How many of them are events (the rest are customers), for record budgets.
    pub events: u64,
    /// Sync-state prints of the keyed rows in the body: recorded once MoEngage accepts it.
    pub prints: Vec<RowPrint>,
    /// Hashes of the `customer_id`s in the body, each once: delivery never has two requests for
    /// one user in flight, so MoEngage applies a user's rows in file order.
    pub customers: Vec<u64>,
    /// First and last data row numbers of the object that this body carries.
    pub first_row: u64,
    pub last_row: u64,
}

/// A single element bigger than a whole request may be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the row encodes to {bytes} bytes, over the {limit}-byte request limit even alone; map fewer or shorter fields")]
pub struct TooLarge {
    pub bytes: usize,
    pub limit: usize,
}

/// Packs elements into bodies as full as the limits allow.
#[derive(Debug)]
pub struct Batcher {
    /// Transition for bulk_import; for the other types one element is one body.
    endpoint: Endpoint,
    max_records: usize,
    max_bytes: usize,
    /// The body being filled, without its closing suffix.
    body: Vec<u8>,
    records: u64,
    events: u64,
    prints: Vec<RowPrint>,
    customers: Vec<u64>,
    first_row: u64,
    last_row: u64,
}

impl Batcher {
    /// `max_records`/`max_bytes` apply to Bulk Import; single-record APIs use their own limit.
    pub fn new(object_type: ObjectType, max_records: usize, max_bytes: usize) -> Self {
        let (endpoint, max_records, max_bytes) = match object_type {
            ObjectType::BulkImport => (Endpoint::Transition, max_records.max(1), max_bytes),
            ObjectType::UserAttributes => (Endpoint::Customer, 1, SINGLE_REQUEST_MAX_BYTES),
            ObjectType::Events => (Endpoint::Event, 1, SINGLE_REQUEST_MAX_BYTES),
        };
        Batcher {
            endpoint,
            max_records,
            max_bytes,
            body: Vec::with_capacity(max_bytes.min(1 << 20)),
            records: 0,
            events: 0,
            prints: Vec::new(),
            customers: Vec::new(),
            first_row: 0,
            last_row: 0,
        }
    }

    /// Adds one encoded element for data row `row` (`is_event`: an event element, else a
    /// customer). Returns the previous body when this element did not fit beside it (the element
    /// then starts the next body), or `Err` when the element is too large to be sent even alone
    /// (nothing is changed then).
    /// Whether `element` could be sent at all (alone in a body within the limit). Checked before
    /// anything records the row as handled: a row that can never be sent is rejected, never
    /// counted unchanged because an identical one came before.
    pub fn check_alone(&self, element: &[u8]) -> Result<(), TooLarge> {
        let alone = self.framed_len(0, element.len());
        if alone > self.max_bytes {
            return Err(TooLarge {
                bytes: alone,
                limit: self.max_bytes,
            });
        }
        Ok(())
    }

    pub fn push(
        &mut self,
        element: &[u8],
        row: u64,
        is_event: bool,
        print: Option<RowPrint>,
    ) -> Result<Option<Batch>, TooLarge> {
        self.check_alone(element)?;
        let fits = self.records > 0
            && (self.records as usize) < self.max_records
            && self.framed_len(self.body.len(), element.len()) <= self.max_bytes;
        let flushed = if self.records > 0 && !fits {
            self.take()
        } else {
            None
        };
        self.append(element, row);
        self.events += u64::from(is_event);
        self.prints.extend(print);
        Ok(flushed)
    }

    /// The body under construction, closed; `None` when empty.
    pub fn finish(&mut self) -> Option<Batch> {
        self.take()
    }

    /// Length of a body holding what is in `current` (0 = empty) plus an element of `len` bytes.
    fn framed_len(&self, current: usize, len: usize) -> usize {
        match self.endpoint {
            Endpoint::Transition => {
                let base = if current == 0 {
                    TRANSITION_PREFIX.len()
                } else {
                    current + 1
                };
                base + len + TRANSITION_SUFFIX.len()
            }
            _ => len,
        }
    }

    fn append(&mut self, element: &[u8], row: u64) {
        if self.records == 0 {
            self.first_row = row;
            if self.endpoint == Endpoint::Transition {
                self.body.extend_from_slice(TRANSITION_PREFIX);
            }
        } else {
            self.body.push(b',');
        }
        self.body.extend_from_slice(element);
        if let Some(id) = customer_id_of(element) {
            self.customers.push(xxhash_rust::xxh3::xxh3_64(id));
        }
        self.records += 1;
        self.last_row = row;
    }

    fn take(&mut self) -> Option<Batch> {
        if self.records == 0 {
            return None;
        }
        if self.endpoint == Endpoint::Transition {
            self.body.extend_from_slice(TRANSITION_SUFFIX);
        }
        self.customers.sort_unstable();
        self.customers.dedup();
        let body = std::mem::replace(
            &mut self.body,
            Vec::with_capacity(self.max_bytes.min(1 << 20)),
        );
        let batch = Batch {
            endpoint: self.endpoint,
            body,
            records: self.records,
            events: self.events,
            prints: std::mem::take(&mut self.prints),
            customers: std::mem::take(&mut self.customers),
            first_row: self.first_row,
            last_row: self.last_row,
        };
        self.records = 0;
        self.events = 0;
        Some(batch)
    }
}

/// The Delete Users body for a customer id as it appears in an element (JSON-escaped, unquoted).
pub fn delete_body(id: &[u8]) -> bytes::Bytes {
    let mut body = Vec::with_capacity(id.len() + 64);
    body.extend_from_slice(b"{\"identity_type\":\"customer_id\",\"identity_value\":\"");
    body.extend_from_slice(id);
    body.extend_from_slice(b"\"}");
    bytes::Bytes::from(body)
}

/// Checks a dead-lettered Delete Users body before redrive replays it: exactly the two fields
/// [`delete_body`] writes, a customer id, a non-empty string.
pub fn check_delete_body(value: &serde_json::Value) -> Result<(), &'static str> {
    let obj = value.as_object().ok_or("it is not a JSON object")?;
    if obj.len() != 2 || obj.get("identity_type").and_then(|t| t.as_str()) != Some("customer_id") {
        return Err("it is not {\"identity_type\":\"customer_id\",\"identity_value\":…}");
    }
    match obj.get("identity_value").and_then(|v| v.as_str()) {
        Some(id) if !id.trim().is_empty() => Ok(()),
        _ => Err("identity_value is missing or empty"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(n: usize) -> Vec<u8> {
        // A valid element padded to exactly n bytes.
        let head = b"{\"type\":\"customer\",\"customer_id\":\"u\",\"attributes\":{\"p\":\"";
        let tail = b"\"}}";
        let mut e = head.to_vec();
        e.resize(n - tail.len(), b'x');
        e.extend_from_slice(tail);
        e
    }

    fn run(b: &mut Batcher, sizes: &[usize]) -> Vec<Batch> {
        let mut out = Vec::new();
        for (i, n) in sizes.iter().enumerate() {
            if let Some(batch) = b.push(&element(*n), i as u64 + 1, false, None).unwrap() {
                out.push(batch);
            }
        }
        out.extend(b.finish());
        out
    }

    #[test]
    fn bodies_are_valid_json_within_both_limits_and_as_full_as_possible() {
        let mut b = Batcher::new(ObjectType::BulkImport, 50, 100_000);
        let batches = run(&mut b, &[100; 120]);
        assert_eq!(
            batches.iter().map(|b| b.records).collect::<Vec<_>>(),
            [50, 50, 20]
        );
        let mut b = Batcher::new(ObjectType::BulkImport, 50, 100_000);
        let batches = run(&mut b, &[3000; 100]);
        for batch in &batches {
            let v: serde_json::Value = serde_json::from_slice(&batch.body).unwrap();
            assert_eq!(
                v["elements"].as_array().unwrap().len() as u64,
                batch.records
            );
            assert!(batch.body.len() <= 100_000);
        }
        // 33 × 3000 + 32 commas + 36 framing = 99_068; a 34th would exceed 100,000.
        assert_eq!(batches[0].records, 33);
        assert_eq!((batches[0].first_row, batches[0].last_row), (1, 33));
        assert_eq!(batches[1].first_row, 34);
    }

    #[test]
    fn the_limit_is_exact_to_the_byte() {
        let framing = TRANSITION_PREFIX.len() + TRANSITION_SUFFIX.len();
        // Two elements that fill the body to exactly 1,000 bytes fit; one byte more does not.
        let first = 500;
        let second = 1_000 - framing - first - 1;
        let mut b = Batcher::new(ObjectType::BulkImport, 50, 1_000);
        let batches = run(&mut b, &[first, second]);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].body.len(), 1_000);
        let mut b = Batcher::new(ObjectType::BulkImport, 50, 1_000);
        assert_eq!(run(&mut b, &[first, second + 1]).len(), 2);
    }

    #[test]
    fn an_element_too_large_alone_is_refused_and_changes_nothing() {
        let mut b = Batcher::new(ObjectType::BulkImport, 50, 1_000);
        assert!(b.push(&element(200), 1, false, None).unwrap().is_none());
        let err = b.push(&element(990), 2, false, None).unwrap_err();
        assert_eq!(err.limit, 1_000);
        let rest = b.finish().unwrap();
        assert_eq!((rest.records, rest.first_row, rest.last_row), (1, 1, 1));
    }

    #[test]
    fn single_record_apis_send_the_element_as_the_body() {
        let mut b = Batcher::new(ObjectType::UserAttributes, 50, 100_000);
        let batches = run(&mut b, &[100, 100]);
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].endpoint, Endpoint::Customer);
        assert_eq!(batches[0].body, element(100));
        assert_eq!(Endpoint::Event.path("APP"), "/v1/event/APP");
    }
}
