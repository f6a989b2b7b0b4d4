//! Lookups by keyed hash across a master-key rotation: the current key's
//! hash first, a previous key's only on a miss, and a row found under a
//! previous key is re-keyed on the spot, so a rotation converges by use
//! (docs/operations.md, "Rotating the master key").

use std::future::Future;

use crate::app::App;
use crate::secrets::Purpose;
use crate::storage::{Rekeyed, StorageResult};

/// The row whose stored hash is that of `data` under any known key.
pub async fn find<T, F, Fut>(
    app: &App,
    purpose: Purpose,
    data: &[u8],
    stored: Rekeyed<'_>,
    lookup: F,
) -> StorageResult<Option<T>>
where
    F: Fn(Vec<u8>) -> Fut,
    Fut: Future<Output = StorageResult<Option<T>>>,
{
    let current = app.secrets.keyed_hash(purpose, data);
    if let Some(found) = lookup(current.clone()).await? {
        return Ok(Some(found));
    }
    for (_, old) in app.secrets.keyed_hashes(purpose, data).skip(1) {
        if let Some(found) = lookup(old.clone()).await? {
            // Losing a race to another request re-keying the same row is fine.
            app.storage.rekey(stored, &old, &current).await?;
            return Ok(Some(found));
        }
    }
    Ok(None)
}
