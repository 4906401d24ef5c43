//! One request's arguments, owned in a single buffer.
//!
//! Why not a `Vec<Bytes>` of slices of the read buffer, which would avoid the copy: every such
//! slice takes a reference count on the read buffer and every drop gives it back, and each of
//! those is a locked instruction. A three-argument check would pay eight of them, more than
//! copying its 50-odd bytes once; and commands only ever read their arguments. So a request's frame is
//! copied into a buffer the decoder reuses, and commands see plain `&[u8]` slices of it.

use bytes::Bytes;

/// The arguments of one request: `get(0)` is the command name.
///
/// `data` holds the bytes (for a multibulk request, the whole frame, headers included, copied
/// in one go); `spans` says where each argument is in it.
#[derive(Clone, Default)]
pub struct Args {
    data: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

/// How many arguments [`Args::with_slices`] lays out on the stack; longer requests take a
/// vector (they are rare and their other costs dwarf one allocation).
const STACK_ARGS: usize = 16;

impl Args {
    /// Arguments copied from a list of byte strings (tests, inline commands, replay).
    pub fn from_slices<I, T>(args: I) -> Args
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        let mut out = Args::default();
        for arg in args {
            out.push(arg.as_ref());
        }
        out
    }

    /// Append one argument.
    pub fn push(&mut self, arg: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(arg);
        self.spans.push((start, arg.len()));
    }

    /// Replace the contents with `frame` (copied), whose arguments are at `spans` (offsets into
    /// `frame`). The caller guarantees every span lies within `frame`.
    pub(crate) fn fill_frame(&mut self, frame: &[u8], spans: &[(usize, usize)]) {
        self.data.clear();
        self.data.extend_from_slice(frame);
        self.spans.clear();
        self.spans.extend_from_slice(spans);
    }

    /// Forget the arguments, keeping the storage.
    pub fn clear(&mut self) {
        self.data.clear();
        self.spans.clear();
    }

    /// Bytes of storage held (what recycling would keep alive).
    pub fn capacity(&self) -> usize {
        self.data.capacity() + self.spans.capacity() * std::mem::size_of::<(usize, usize)>()
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Argument `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let &(start, len) = self.spans.get(i)?;
        self.data.get(start..start + len)
    }

    /// Every argument in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.spans
            .iter()
            .map(|&(start, len)| self.data.get(start..start + len).unwrap_or(&[]))
    }

    /// Run `f` over the arguments as a slice of slices, the form commands take. Up to 16
    /// arguments (`STACK_ARGS`) are laid out on the stack, so the common request allocates
    /// nothing here.
    pub fn with_slices<R>(&self, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        if self.len() <= STACK_ARGS {
            let mut stack: [&[u8]; STACK_ARGS] = [&[]; STACK_ARGS];
            for (slot, arg) in stack.iter_mut().zip(self.iter()) {
                *slot = arg;
            }
            f(&stack[..self.len()])
        } else {
            let all: Vec<&[u8]> = self.iter().collect();
            f(&all)
        }
    }

    /// Owned copies of the arguments, for what outlives the request (a MULTI queue, a record).
    pub fn to_bytes(&self) -> Vec<Bytes> {
        self.iter().map(Bytes::copy_from_slice).collect()
    }
}

impl PartialEq for Args {
    fn eq(&self, other: &Args) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Args {}

impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|a| String::from_utf8_lossy(a)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_spans_and_pushes_read_back() {
        let frame = b"*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n";
        let mut a = Args::default();
        a.fill_frame(frame, &[(8, 4), (18, 2)]);
        assert_eq!(a.len(), 2);
        assert_eq!(a.get(0), Some(&b"PING"[..]));
        assert_eq!(a.get(1), Some(&b"hi"[..]));
        assert_eq!(a.get(2), None);
        assert_eq!(a, Args::from_slices(["PING", "hi"]));
        a.clear();
        assert!(a.is_empty());
        a.push(b"x");
        assert_eq!(a.to_bytes(), vec![Bytes::from_static(b"x")]);
    }

    #[test]
    fn with_slices_handles_short_and_long_requests() {
        for n in [0, 1, STACK_ARGS, STACK_ARGS + 1, 100] {
            let words: Vec<String> = (0..n).map(|i| format!("a{i}")).collect();
            let args = Args::from_slices(&words);
            let seen = args.with_slices(|s| s.iter().map(|a| a.to_vec()).collect::<Vec<_>>());
            let want: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
            assert_eq!(seen, want, "{n} arguments");
        }
    }
}
