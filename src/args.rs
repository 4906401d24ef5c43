//! Owned and borrowed forms of a request's arguments.
//!
//! Commands take their arguments as `&[&[u8]]`, views into the connection's read buffer.
//! Whatever outlives the request (a MULTI queue, a subscription, a replication record, a
//! limits-log record replayed at start) holds owned [`Bytes`] instead; these two functions
//! convert between the forms.

use bytes::Bytes;

/// Borrowed views of owned arguments, the form commands take.
pub fn slices(args: &[Bytes]) -> Vec<&[u8]> {
    args.iter().map(|a| &a[..]).collect()
}

/// Owned copies of a request's arguments: the inverse of [`slices`].
pub fn owned(args: &[&[u8]]) -> Vec<Bytes> {
    args.iter().map(|a| Bytes::copy_from_slice(a)).collect()
}
