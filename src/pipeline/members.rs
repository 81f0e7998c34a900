//! Which users a snapshot holds, for mirror mode: the state key of every row's `customer_id`,
//! read from each data object of the snapshot into a [`PrintSpool`] (bounded memory, the rest
//! spilled to `/tmp`). A row counts whatever its other cells hold: a row rejected for a bad email
//! still says its user is in the warehouse, so that user is never deleted.

use std::sync::Arc;

use tokio_util::io::SyncIoBridge;

use crate::app::Deps;
use crate::config::syncs::SyncSpec;
use crate::decode::{self, Opened, RowSource};
use crate::model::{ElementKind, ObjectRef};
use crate::sync_state::verdicts::PrintSpool;
use crate::sync_state::{Fingerprinter, RowPrint};

/// What [`add_members`] read of one object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberRows {
    pub rows: u64,
    /// Rows the decoder could not split into cells: the users they hold are unknown, so a
    /// snapshot with any of them deletes nobody.
    pub unreadable: u64,
    /// The first unreadable row's number.
    pub first_unreadable: Option<u64>,
}

/// Adds the users of `object` (at version `etag`) to `spool`; `row_base` numbers its rows after
/// the objects before it. Fails (naming the object) when it cannot be read or decoded to its end:
/// a snapshot read in part must not delete anyone.
pub async fn add_members(
    deps: &Deps,
    spec: &Arc<SyncSpec>,
    object: &ObjectRef,
    etag: &str,
    spool: PrintSpool,
    row_base: u64,
) -> Result<(PrintSpool, MemberRows), String> {
    let named = format!("s3://{}/{}", object.bucket, object.key);
    let source = super::open_object(deps, object, Some(etag))
        .await
        .map_err(|e| format!("{named}: {e}"))?;
    let ranged = super::ranged_object(deps, object, &source);
    let reader = SyncIoBridge::new(source.body);
    let (config, spec, key) = (
        Arc::new(deps.config.clone()),
        spec.clone(),
        object.key.clone(),
    );
    let encoding = source.content_encoding.clone();
    let thread = tokio::task::spawn_blocking(move || {
        let input = super::decode_input(
            Box::new(reader),
            &key,
            encoding.as_deref(),
            &spec,
            &config,
            ranged,
        );
        let mut spool = spool;
        let rows = match decode::open(input) {
            Ok(Opened::Csv(mut rows)) => members(&mut *rows, &spec, &mut spool, row_base),
            Ok(Opened::Ndjson(mut rows)) => members(&mut rows, &spec, &mut spool, row_base),
            Ok(Opened::Parquet(mut rows)) => members(&mut rows, &spec, &mut spool, row_base),
            Err(e) => Err(e.to_string()),
        };
        rows.map(|n| (spool, n))
    });
    thread
        .await
        .map_err(|e| format!("{named}: internal error while reading its users: {e}"))?
        .map_err(|e| format!("{named}: {e}"))
}

fn members<R: RowSource>(
    rows: &mut R,
    spec: &SyncSpec,
    spool: &mut PrintSpool,
    row_base: u64,
) -> Result<MemberRows, String> {
    let mapping = spec
        .field_mapping
        .resolve(rows.header(), spec.sync_mode)
        .map_err(|e| format!("the mapping does not fit this export: {e}"))?;
    let mut id = Vec::with_capacity(64);
    let mut read = MemberRows::default();
    loop {
        match rows.next_row() {
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(bad))) => {
                read.rows += 1;
                read.unreadable += 1;
                read.first_unreadable.get_or_insert(bad.row);
                continue;
            }
            Ok(None) => return Ok(read),
            Err(e) => return Err(format!("could not be read to its end: {e}")),
        }
        read.rows += 1;
        if mapping.customer_id_json(&*rows, &mut id) {
            let print = RowPrint {
                key: Fingerprinter::key(ElementKind::Customer, &id),
                fingerprint: 1,
            };
            spool
                .push(row_base + read.rows, ElementKind::Customer, print)
                .map_err(|e| {
                    format!(
                        "could not spool its users to {}: {e}; check the function's ephemeral storage",
                        std::env::temp_dir().display()
                    )
                })?;
        }
    }
}
