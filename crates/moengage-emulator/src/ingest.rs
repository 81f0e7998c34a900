//! Turning a decoded request body into stored state: the single endpoints refuse a broken
//! rule with a 400, Bulk Import drops the element silently (recording why), as MoEngage does.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::store::{DroppedElement, StateSnapshot};
use crate::validate::{check_element, customer_id_text, ElementType, Rejection, RejectionKind};

impl StateSnapshot {
    /// Track User / Create Event: a rule broken is a 400 naming the attribute.
    pub(crate) fn ingest_single(
        &mut self,
        request: usize,
        body: &Value,
        expected: ElementType,
        now: DateTime<Utc>,
    ) -> Result<(), Rejection> {
        let checked = check_element(body, now)?;
        if checked.kind != expected {
            let want = if expected == ElementType::Customer {
                "customer"
            } else {
                "event"
            };
            return Err(Rejection {
                kind: RejectionKind::Invalid,
                attribute: "type".to_owned(),
                message: format!("type must be \"{want}\" for this endpoint"),
            });
        }
        self.apply(request, 0, body, checked);
        Ok(())
    }

    /// Bulk Import: only the envelope can fail the call; bad elements are dropped silently
    /// (and recorded), as MoEngage does.
    pub(crate) fn ingest_bulk(
        &mut self,
        request: usize,
        body: &Value,
        now: DateTime<Utc>,
    ) -> Result<(), Rejection> {
        let missing = |a: &str| Rejection {
            kind: RejectionKind::Missing,
            attribute: a.to_owned(),
            message: format!("{a} is not found in the payload"),
        };
        let invalid = |a: &str, m: &str| Rejection {
            kind: RejectionKind::Invalid,
            attribute: a.to_owned(),
            message: m.to_owned(),
        };
        let Some(envelope) = body.as_object() else {
            return Err(invalid("body", "body must be a JSON object"));
        };
        match envelope.get("type") {
            None | Some(Value::Null) => return Err(missing("type")),
            Some(t) if t == "transition" => {}
            Some(_) => return Err(invalid("type", "type must be \"transition\"")),
        }
        let elements = match envelope.get("elements") {
            None | Some(Value::Null) => return Err(missing("elements")),
            Some(Value::Array(elements)) => elements,
            Some(_) => return Err(invalid("elements", "elements must be an array")),
        };
        for (index, element) in elements.iter().enumerate() {
            match check_element(element, now) {
                Ok(checked) => self.apply(request, index, element, checked),
                Err(rejection) => self.dropped.push(DroppedElement {
                    request,
                    element_index: index,
                    customer_id: customer_id_text(element),
                    error_type: rejection.kind.error_type().to_owned(),
                    attribute: rejection.attribute,
                    reason: rejection.message,
                    element: element.clone(),
                }),
            }
        }
        Ok(())
    }
}
